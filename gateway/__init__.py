"""The HTTP gateway: S3 (Swift to come) over RADOS, through the client library only.

Layers, each depending only on those below it:

    daemon.py                 the process: connect, pools, HTTP server, GC worker
    server.py                 routing (path/virtual-host), auth, S3 error documents
    s3_*.py                   one module per S3 area (buckets, objects, multipart, versions,
                              tagging, POST forms); context.py is what every handler gets
    sigv4.py sigv2.py         request signatures; chunked.py body.py checksums.py: bodies
    s3_xml.py errors.py tags.py   S3's XML, error codes, tag rules
    users.py buckets.py listing.py versioning.py objects.py gc.py pools.py
                              the API-neutral store: users and keys, bucket entries and their
                              sharded index, object data in stripes, garbage collection
"""
