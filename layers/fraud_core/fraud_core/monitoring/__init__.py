"""Model monitoring in numpy only (it runs in the layer): reference profiles, drift tests with
sample-size thresholds, realised metrics on delayed labels, and the monitor job over the logs."""
