"""Settings and the factory that builds each port's adapter from them."""
