"""The whole stack as a user starts it (./build.sh up), and the load tests."""
