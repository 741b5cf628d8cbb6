"""Real test peers: a recording aiosmtpd server and throwaway PostgreSQL schemas."""
