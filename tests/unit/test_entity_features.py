"""Online window arithmetic (in memory) equals the offline pandas computation, whatever the
event mix, with redeliveries and labels fed on their delay."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fraud_core.labels import Label
from fraud_core.shapes.simulated import CardEvent, InMemoryWindows
from fraud_core.shapes.simulated.features import DAY, LABEL_DELAY_DAYS, SIMULATED_FEATURE_NAMES, calendar
from fraud_training.entity_offline import entity_features

START = 1_522_540_800  # 2018-04-01T00:00:00Z

events_strategy = st.lists(
    st.tuples(
        st.integers(0, 45 * DAY),  # seconds after START
        st.integers(0, 3),  # card
        st.integers(0, 2),  # terminal
        st.integers(0, 50_000).map(lambda c: c / 100),  # amount with cents
        st.booleans(),  # fraud
        st.booleans(),  # redelivered?
    ),
    min_size=1,
    max_size=60,
)


def replay(rows: list[tuple[int, int, int, float, bool, bool]]) -> tuple[pd.DataFrame, np.ndarray]:
    """Offline frame (time-sorted, unique ids) and the online feature matrix in the same order."""
    ordered = sorted(enumerate(rows), key=lambda r: (r[1][0], r[0]))
    frame = pd.DataFrame(
        {
            "transaction_id": [i for i, _ in ordered],
            "tx_datetime": pd.to_datetime([START + r[0] for _, r in ordered], unit="s"),
            "customer_id": [r[1] for _, r in ordered],
            "terminal_id": [r[2] for _, r in ordered],
            "amount": [r[3] for _, r in ordered],
            "is_fraud": [int(r[4]) for _, r in ordered],
        }
    )
    state = InMemoryWindows()
    pending: list[Label] = []
    online = []
    for i, r in ordered:
        t = START + r[0]
        due = [lb for lb in pending if lb.epoch + LABEL_DELAY_DAYS * DAY <= t]
        pending = [lb for lb in pending if lb not in due]
        state.add_labels(due[::-1])  # label arrival order must not matter
        event = CardEvent(str(i), t, str(r[1]), str(r[2]), r[3])
        (vector,) = state.observe([event], ["same"])
        if r[5]:  # a redelivery changes nothing and returns the same features
            before = repr(state)
            assert state.observe([event], ["same"]) == [vector]
            assert repr(state) == before
        online.append(vector)
        pending.append(Label(str(i), t, is_fraud=r[4], terminal_id=str(r[2])))
    return frame, np.array(online)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events_strategy)
def test_online_windows_equal_offline(rows: list[tuple[int, int, int, float, bool, bool]]) -> None:
    frame, online = replay(rows)
    offline = entity_features(frame).to_numpy()
    assert online.shape == offline.shape
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-9)


def test_window_edges_are_half_open() -> None:
    # GIVEN transactions exactly 1 day and 7 days apart on one card and terminal
    rows = [
        (0, 0, 0, 10.0, True, False),
        (DAY, 0, 0, 20.0, False, False),
        (8 * DAY, 0, 0, 30.0, False, False),
    ]
    frame, online = replay(rows)
    names = list(SIMULATED_FEATURE_NAMES)
    # THEN the 1-day card window at t=1d excludes t=0 (start is exclusive)
    assert online[1][names.index("card_nb_tx_1d")] == 1
    assert online[1][names.index("card_nb_tx_7d")] == 2
    # AND at t=8d the delayed terminal window (0, 1d] holds the t=1d transaction, and the 7-day
    # one (-6d, 1d] both, one of them a fraud
    assert online[2][names.index("terminal_nb_tx_1d")] == 1
    assert online[2][names.index("terminal_nb_tx_7d")] == 2
    assert online[2][names.index("terminal_risk_7d")] == 0.5
    np.testing.assert_allclose(online, entity_features(frame).to_numpy(), atol=1e-9)


def test_calendar() -> None:
    saturday_3am = START + 6 * DAY + 3 * 3600  # 2018-04-07 was a Saturday
    weekend, night = calendar([saturday_3am, START + 2 * DAY + 12 * 3600])
    assert weekend.tolist() == [1, 0]
    assert night.tolist() == [1, 0]


@settings(max_examples=100, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False))
def test_window_state_is_independent_of_arrival_order(
    rows: list[tuple[int, int, int, float, bool, bool]], rnd: object
) -> None:
    # GIVEN the same events (and labels) delivered in time order and in a random order, with duplicates
    events = [CardEvent(str(i), START + r[0], str(r[1]), str(r[2]), r[3]) for i, r in enumerate(rows)]
    labels = [Label(str(i), START + r[0], is_fraud=r[4], terminal_id=str(r[2])) for i, r in enumerate(rows)]
    ordered, shuffled = InMemoryWindows(), InMemoryWindows()
    for e in sorted(events, key=lambda e: e.epoch):
        ordered.observe([e], [e.transaction_id])
    ordered.add_labels(labels)
    mixed = list(events) + [e for e, r in zip(events, rows, strict=True) if r[5]]
    rnd.shuffle(mixed)  # type: ignore[attr-defined]
    for e in mixed:
        shuffled.observe([e], [e.transaction_id])
    shuffled.add_labels(list(reversed(labels)))
    # THEN the windows answer the same for any later transaction on any card and terminal
    probes = [
        CardEvent(f"probe{c}{t}", START + 50 * DAY + 17, str(c), str(t), 1.0)
        for c in range(4)
        for t in range(3)
    ]
    np.testing.assert_allclose(ordered.peek(probes), shuffled.peek(probes), atol=1e-9, rtol=0)


def test_outlier_counts_read_earlier_transactions_against_the_current_median() -> None:
    # GIVEN a card of 10.00 purchases with one of 35.00 (3.5x) ten days before the last, and one
    # of 25.00 (2.5x) the day before it
    rows = [(d * DAY, 0, 0, 10.0, False, False) for d in range(8)]
    rows += [(8 * DAY, 0, 0, 35.0, False, False), (17 * DAY, 0, 0, 25.0, False, False)]
    rows += [(18 * DAY, 0, 0, 10.0, False, False)]
    frame, online = replay(rows)
    names = list(SIMULATED_FEATURE_NAMES)
    last = online[-1]
    # THEN the last transaction counts both over 2x its median in 14 days, the 35.00 over 3x in
    # 14 days, and none over 3x in 7 days (the 35.00 is ten days old)
    assert last[names.index("card_median_amount_30d")] == 10.0
    assert last[names.index("card_prev_over_2x_median_14d")] == 2
    assert last[names.index("card_prev_over_3x_median_14d")] == 1
    assert last[names.index("card_prev_over_3x_median_7d")] == 0
    # AND the 35.00 itself does not count itself: nothing earlier was over 2x
    assert online[8][names.index("card_prev_over_2x_median_14d")] == 0
    np.testing.assert_allclose(online, entity_features(frame).to_numpy(), atol=1e-9)


def test_terminal_fraud_run_is_bounded_by_the_legitimate_transaction_before_it() -> None:
    # GIVEN a terminal with a legitimate transaction on day 0, then frauds on days 2 and 3, and a
    # second terminal whose only known transactions are frauds (day 0 and 1)
    rows = [
        (0, 0, 0, 10.0, False, False),
        (2 * DAY, 1, 0, 10.0, True, False),
        (3 * DAY, 2, 0, 10.0, True, False),
    ]
    rows += [(0, 0, 1, 10.0, True, False), (DAY, 1, 1, 10.0, True, False)]
    # WHEN each is scored on day 12 (labels known up to day 5)
    rows += [(12 * DAY, 3, 0, 10.0, False, False), (12 * DAY, 3, 1, 10.0, False, False)]
    frame, online = replay(rows)
    names = list(SIMULATED_FEATURE_NAMES)
    first, second = online[-2], online[-1]
    # THEN the run of two frauds began between 10 and 12 days ago
    assert first[names.index("terminal_fraud_streak")] == 2
    assert first[names.index("terminal_fraud_streak_age_days")] == 10.0
    assert first[names.index("terminal_fraud_streak_gap_days")] == 12.0
    # AND a run with nothing known before it is bounded by the window's start (37 days)
    assert second[names.index("terminal_fraud_streak")] == 2
    assert second[names.index("terminal_fraud_streak_gap_days")] == 37.0
    # AND without a run there is no bound
    assert online[0][names.index("terminal_fraud_streak_gap_days")] == 0.0
    np.testing.assert_allclose(online, entity_features(frame).to_numpy(), atol=1e-9)
