"""obstop agent: proves, stops and reports on the observers of its host and of hosts it reaches by SSH."""
