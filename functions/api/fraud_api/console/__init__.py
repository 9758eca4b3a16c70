"""The analyst console: alert queue, case view, model panel, dead letters, live panel (`/console`)."""
