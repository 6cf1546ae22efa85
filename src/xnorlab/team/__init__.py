"""A team's tracking server: start/stop it, and measure concurrent writers against a store."""
