"""Online state in Redis: key names, the client and its error mapping, stored results."""
