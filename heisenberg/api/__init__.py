"""The local HTTP/WebSocket API and the dashboard."""
