"""Generated from protos/authz/adminpb/admin.proto by grpcio-tools (`make protos`); committed, do not edit."""
