"""The HTTP gateway: S3 and Swift over RADOS, through the client library only.

Layers, each depending only on those below it:

    daemon.py                 the process: connect, pools, HTTP server, GC worker
    server.py                 routing (path/virtual-host), auth, S3 error documents
    s3_*.py                   one module per S3 area (buckets, objects, multipart, versions,
                              tagging, POST forms); context.py is what every handler gets
    sigv4.py sigv2.py         request signatures; chunked.py body.py checksums.py: bodies
    s3_xml.py errors.py tags.py   S3's XML, error codes, tag rules
    swift_server.py           Swift's routing (a middleware before S3's), then swift_account,
                              swift_containers, swift_objects, swift_large (DLO/SLO), swift_bulk;
                              swift_auth, swift_tempurl, swift_acl, swift_meta, swift_listing,
                              swift_expiry, swift_errors: its rules; swift_context: the request
    users.py buckets.py listing.py versioning.py objects.py gc.py pools.py
                              the API-neutral store: users and keys, bucket entries and their
                              sharded index, object data in stripes, garbage collection
"""
