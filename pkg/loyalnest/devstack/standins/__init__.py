"""Local stand-ins of outside APIs (named as such), started by the tests and `loyalnest up`."""
