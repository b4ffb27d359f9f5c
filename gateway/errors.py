"""S3 errors as classes carrying their code and HTTP status (the one table of S3 error codes).

Handlers raise these; the server turns any of them into the S3 error document. Anything else
that escapes a handler becomes InternalError (500) with no traceback in the answer.
"""

from __future__ import annotations


class S3Error(Exception):
    """An error answered as `<Error><Code>...</Code>...</Error>` with `status`."""

    code = "InternalError"
    status = 500
    default = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, **extra: str) -> None:
        self.message = message or self.default
        self.extra = extra  # more elements of the error document (BucketName, Key...)
        self.headers: dict[str, str] = {}  # more response headers (x-amz-delete-marker...)
        super().__init__(self.message)


def _error(code: str, status: int, default: str) -> type[S3Error]:
    return type(code, (S3Error,), {"code": code, "status": status, "default": default})


AccessDenied = _error("AccessDenied", 403, "Access Denied")
AuthorizationHeaderMalformed = _error("AuthorizationHeaderMalformed", 400,
                                      "The authorization header is malformed.")
AuthorizationQueryParametersError = _error("AuthorizationQueryParametersError", 400,
                                           "Query-string authentication is malformed.")
BadDigest = _error("BadDigest", 400, "The Content-MD5 you specified did not match what we "
                   "received.")
BucketAlreadyExists = _error("BucketAlreadyExists", 409, "The requested bucket name is not "
                             "available. Select a different name and try again.")
BucketAlreadyOwnedByYou = _error("BucketAlreadyOwnedByYou", 409, "Your previous request to "
                                 "create the named bucket succeeded and you already own it.")
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty.")
EntityTooLarge = _error("EntityTooLarge", 400, "Your proposed upload exceeds the maximum "
                        "allowed object size.")
EntityTooSmall = _error("EntityTooSmall", 400, "Your proposed upload is smaller than the "
                        "minimum allowed object size.")
IncompleteBody = _error("IncompleteBody", 400, "You did not provide the number of bytes "
                        "specified by the Content-Length HTTP header.")
InternalError = S3Error
InvalidAccessKeyId = _error("InvalidAccessKeyId", 403, "The AWS access key Id you provided "
                            "does not exist in our records.")
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidBucketState = _error("InvalidBucketState", 409, "The request is not valid with the "
                            "current state of the bucket.")
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
InvalidPart = _error("InvalidPart", 400, "One or more of the specified parts could not be "
                     "found, or its entity tag did not match.")
InvalidPartOrder = _error("InvalidPartOrder", 400, "The list of parts was not in ascending "
                          "order.")
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidRetentionPeriod = _error("InvalidRetentionPeriod", 400, "The retention period must "
                                "be a positive whole number of days or years.")
InvalidURI = _error("InvalidURI", 400, "Couldn't parse the specified URI.")
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long")
MalformedXML = _error("MalformedXML", 400, "The XML you provided was not well-formed or did "
                      "not validate against our published schema.")
MethodNotAllowed = _error("MethodNotAllowed", 405, "The specified method is not allowed "
                          "against this resource.")
MissingContentLength = _error("MissingContentLength", 411, "You must provide the "
                              "Content-Length HTTP header.")
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist.")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
NoSuchObjectLockConfiguration = _error("NoSuchObjectLockConfiguration", 404, "The "
                                       "specified object does not have a ObjectLock "
                                       "configuration")
NoSuchUpload = _error("NoSuchUpload", 404, "The specified multipart upload does not exist.")
NotImplementedError_ = _error("NotImplemented", 501, "A header or query you provided implies "
                              "functionality that is not implemented.")
NotModified = _error("NotModified", 304, "Not Modified")
ObjectLockConfigurationNotFoundError = _error("ObjectLockConfigurationNotFoundError", 404,
                                              "Object Lock configuration does not exist for "
                                              "this bucket")
PreconditionFailed = _error("PreconditionFailed", 412, "At least one of the preconditions you "
                            "specified did not hold.")
RequestTimeTooSkewed = _error("RequestTimeTooSkewed", 403, "The difference between the request "
                              "time and the current time is too large.")
ServiceUnavailable = _error("ServiceUnavailable", 503, "Please reduce your request rate.")
SignatureDoesNotMatch = _error("SignatureDoesNotMatch", 403, "The request signature we "
                               "calculated does not match the signature you provided. Check "
                               "your key and signing method.")
XAmzContentSHA256Mismatch = _error("XAmzContentSHA256Mismatch", 400, "The provided "
                                   "'x-amz-content-sha256' header does not match what was "
                                   "computed.")
InvalidChecksum = _error("InvalidRequest", 400, "Value for x-amz-checksum header is invalid.")
BadChecksum = _error("BadDigest", 400, "The checksum you specified did not match what we "
                     "received.")
NoSuchVersion = _error("NoSuchVersion", 404, "The specified version does not exist.")
IllegalVersioningConfigurationException = _error(
    "IllegalVersioningConfigurationException", 400,
    "The versioning configuration specified in the request is invalid.")
# a part number beyond the object's parts: 400 InvalidPart, as RGW answers and Ceph's
# s3-tests expect (AWS answers 416 InvalidPartNumber)
InvalidPartNumber = _error("InvalidPart", 400, "The requested part number is not "
                           "satisfiable")
MetadataTooLarge = _error("MetadataTooLarge", 400, "Your metadata headers exceed the maximum "
                          "allowed metadata size.")
InvalidTag = _error("InvalidTag", 400, "The tag provided was not a valid tag.")
NoSuchTagSet = _error("NoSuchTagSet", 404, "The TagSet does not exist")
InvalidBucketAclWithObjectOwnership = _error(
    "InvalidBucketAclWithObjectOwnership", 400,
    "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting")
InvalidStorageClass = _error("InvalidStorageClass", 400, "The storage class you specified is "
                             "not valid")
