"""Network edges and the command line around the StreamGuard core."""
