"""canhbao: early warning of non-traditional security threats."""
