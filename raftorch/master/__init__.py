"""The master: a store replica, the gRPC API, and (on the leader) the work only one may do."""
