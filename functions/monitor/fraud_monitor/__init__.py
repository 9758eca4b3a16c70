"""The scheduled monitor Lambda function (EventBridge, hourly)."""
