"""The bridge driver."""
