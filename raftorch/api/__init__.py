"""Generated gRPC and protobuf code; import it only from raftorch.client and the servicers."""
