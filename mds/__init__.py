"""The file system: the metadata server (namespace in RADOS, journal, sessions, standby
takeover) and, in `mds.client`, the client that mounts it through FUSE."""
