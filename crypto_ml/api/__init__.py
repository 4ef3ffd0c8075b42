"""The HTTP API and its dashboard (``crypto-ml serve``); see the modules for the parts."""
