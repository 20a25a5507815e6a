#!/usr/bin/env python3
"""Interop checks with boto3 and plain HTTP (requests) against a running Cairn site.

Usage: interop_boto3.py ENDPOINT   (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)

Covers presigned GET and PUT URLs, browser-style POST uploads with a signed policy,
versioning, and Signature Version 2 (botocore's "s3" signer: objects, listings, a sub-resource,
a presigned URL fetched with curl). Prints one `ok NAME` or `FAILED NAME` line per check (details indented below a
failure) and exits non-zero when any check failed.
"""

import os
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

TIMEOUT = 30  # seconds, for every HTTP request this script makes itself

passed = 0
failed = 0


def check(name):
    """Decorator: runs the function now as the check NAME and records the outcome."""

    def run(fn):
        global passed, failed
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            print(f"FAILED boto3: {name}", flush=True)
            detail = traceback.format_exc() if not isinstance(e, AssertionError) else f"{e}\n"
            for line in detail.rstrip().splitlines()[-20:]:
                print(f"    {line}", flush=True)
        else:
            passed += 1
            print(f"ok     boto3: {name}", flush=True)
        return fn

    return run


def expect(cond, msg):
    if not cond:
        raise AssertionError(msg)


def describe(resp):
    return f"HTTP {resp.status_code}: {resp.text[:500]}"


def client_error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response.get("Error", {}).get("Code"), e.response["ResponseMetadata"]["HTTPStatusCode"]
    return None, 200


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=10,
            read_timeout=TIMEOUT,
        ),
    )
    bucket = "boto3-" + uuid.uuid4().hex[:12]
    s3.create_bucket(Bucket=bucket)

    # --- presigned URLs -------------------------------------------------------------------
    get_body = os.urandom(100_000)
    s3.put_object(Bucket=bucket, Key="presigned/get.bin", Body=get_body)

    @check("presigned GET URL returns the object")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "presigned/get.bin"}, ExpiresIn=300
        )
        r = requests.get(url, timeout=TIMEOUT)
        expect(r.status_code == 200, describe(r))
        expect(r.content == get_body, f"body differs: {len(r.content)} bytes back")

    @check("presigned GET URL with a range header")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "presigned/get.bin"}, ExpiresIn=300
        )
        r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=TIMEOUT)
        expect(r.status_code == 206, describe(r))
        expect(r.content == get_body[10:20], "range body differs")

    @check("presigned GET URL with a tampered signature is refused (403)")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "presigned/get.bin"}, ExpiresIn=300
        )
        i = url.index("X-Amz-Signature=") + len("X-Amz-Signature=")
        bad = url[:i] + ("0" if url[i] != "0" else "1") + url[i + 1 :]
        r = requests.get(bad, timeout=TIMEOUT)
        expect(r.status_code == 403, describe(r))

    @check("expired presigned GET URL is refused (403)")
    def _():
        url = s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "presigned/get.bin"}, ExpiresIn=1
        )
        time.sleep(2.5)
        r = requests.get(url, timeout=TIMEOUT)
        expect(r.status_code == 403, describe(r))

    put_body = os.urandom(70_000)

    @check("presigned PUT URL uploads the object")
    def _():
        url = s3.generate_presigned_url(
            "put_object", Params={"Bucket": bucket, "Key": "presigned/put.bin"}, ExpiresIn=300
        )
        r = requests.put(url, data=put_body, timeout=TIMEOUT)
        expect(r.status_code == 200, describe(r))
        got = s3.get_object(Bucket=bucket, Key="presigned/put.bin")["Body"].read()
        expect(got == put_body, f"stored body differs: {len(got)} bytes")

    @check("presigned PUT URL with a signed Content-Type")
    def _():
        url = s3.generate_presigned_url(
            "put_object",
            Params={"Bucket": bucket, "Key": "presigned/put.txt", "ContentType": "text/plain"},
            ExpiresIn=300,
        )
        r = requests.put(url, data=b"hello", headers={"Content-Type": "text/plain"}, timeout=TIMEOUT)
        expect(r.status_code == 200, describe(r))
        head = s3.head_object(Bucket=bucket, Key="presigned/put.txt")
        expect(head["ContentType"] == "text/plain", f"ContentType {head['ContentType']!r}")
        expect(head["ContentLength"] == 5, f"ContentLength {head['ContentLength']}")

    # --- browser-style POST uploads -----------------------------------------------------------
    post_body = b"uploaded through an HTML form\n" * 10

    def presigned_post(key):
        return s3.generate_presigned_post(
            Bucket=bucket,
            Key=key,
            Fields={"Content-Type": "text/plain"},
            Conditions=[{"Content-Type": "text/plain"}, ["content-length-range", 1, 1024]],
            ExpiresIn=300,
        )

    @check("POST upload with a signed policy stores the object")
    def _():
        post = presigned_post("post/form.txt")
        r = requests.post(
            post["url"],
            data=post["fields"],
            files={"file": ("form.txt", post_body, "text/plain")},
            timeout=TIMEOUT,
        )
        expect(r.status_code in (200, 201, 204), describe(r))
        obj = s3.get_object(Bucket=bucket, Key="post/form.txt")
        got = obj["Body"].read()
        expect(got == post_body, f"stored body differs: {got[:80]!r}")
        expect(obj["ContentType"] == "text/plain", f"ContentType {obj['ContentType']!r}")

    @check("POST upload with success_action_status=201 answers 201 with XML")
    def _():
        post = s3.generate_presigned_post(
            Bucket=bucket,
            Key="post/created.txt",
            Fields={"success_action_status": "201"},
            Conditions=[{"success_action_status": "201"}],
            ExpiresIn=300,
        )
        r = requests.post(
            post["url"], data=post["fields"], files={"file": ("c.txt", b"created")}, timeout=TIMEOUT
        )
        expect(r.status_code == 201, describe(r))
        expect(b"post/created.txt" in r.content, f"no key in the response: {r.text[:300]}")
        got = s3.get_object(Bucket=bucket, Key="post/created.txt")["Body"].read()
        expect(got == b"created", f"stored body {got!r}")

    @check("POST upload larger than content-length-range is refused (4xx)")
    def _():
        post = presigned_post("post/too-big.txt")
        r = requests.post(
            post["url"],
            data=post["fields"],
            files={"file": ("big.txt", b"x" * 2048, "text/plain")},
            timeout=TIMEOUT,
        )
        expect(400 <= r.status_code < 500, describe(r))
        code, _status = client_error_code(lambda: s3.head_object(Bucket=bucket, Key="post/too-big.txt"))
        expect(code in ("404", "NoSuchKey"), f"object exists after a refused POST (head: {code})")

    @check("POST upload with a key outside the policy is refused (403)")
    def _():
        post = presigned_post("post/allowed.txt")
        fields = dict(post["fields"], key="post/other.txt")
        r = requests.post(
            post["url"], data=fields, files={"file": ("o.txt", b"other", "text/plain")}, timeout=TIMEOUT
        )
        # As S3: 403 AccessDenied, "Invalid according to Policy".
        expect(r.status_code == 403 and b"AccessDenied" in r.content, describe(r))
        code, _status = client_error_code(lambda: s3.head_object(Bucket=bucket, Key="post/other.txt"))
        expect(code in ("404", "NoSuchKey"), f"object exists after a refused POST (head: {code})")

    @check("POST upload with a tampered policy signature is refused (403)")
    def _():
        post = presigned_post("post/forged.txt")
        fields = dict(post["fields"])
        sig = fields["x-amz-signature"]
        fields["x-amz-signature"] = ("0" if sig[0] != "0" else "1") + sig[1:]
        r = requests.post(
            post["url"], data=fields, files={"file": ("f.txt", b"forged", "text/plain")}, timeout=TIMEOUT
        )
        expect(r.status_code == 403, describe(r))

    # --- versioning -------------------------------------------------------------------------
    vbucket = bucket + "-v"
    s3.create_bucket(Bucket=vbucket)
    state = {}

    @check("versioning: enable and read back")
    def _():
        s3.put_bucket_versioning(Bucket=vbucket, VersioningConfiguration={"Status": "Enabled"})
        status = s3.get_bucket_versioning(Bucket=vbucket).get("Status")
        expect(status == "Enabled", f"status {status!r}")

    @check("versioning: two puts make two version ids")
    def _():
        v1 = s3.put_object(Bucket=vbucket, Key="doc.txt", Body=b"first")["VersionId"]
        v2 = s3.put_object(Bucket=vbucket, Key="doc.txt", Body=b"second")["VersionId"]
        expect(v1 and v2 and v1 != v2, f"version ids {v1!r}, {v2!r}")
        state.update(v1=v1, v2=v2)

    @check("versioning: list_object_versions lists both, newest latest")
    def _():
        vs = s3.list_object_versions(Bucket=vbucket, Prefix="doc.txt").get("Versions", [])
        ids = [(v["VersionId"], v["IsLatest"]) for v in vs]
        expect(ids == [(state["v2"], True), (state["v1"], False)], f"versions {ids}")

    @check("versioning: get_object by VersionId")
    def _():
        old = s3.get_object(Bucket=vbucket, Key="doc.txt", VersionId=state["v1"])
        expect(old["Body"].read() == b"first", "old version body differs")
        expect(old["VersionId"] == state["v1"], f"VersionId {old['VersionId']!r}")
        cur = s3.get_object(Bucket=vbucket, Key="doc.txt")["Body"].read()
        expect(cur == b"second", f"current body {cur!r}")

    @check("versioning: delete makes a delete marker and hides the object")
    def _():
        d = s3.delete_object(Bucket=vbucket, Key="doc.txt")
        expect(d.get("DeleteMarker") is True, f"delete response {d}")
        state["marker"] = d["VersionId"]
        code, status = client_error_code(lambda: s3.get_object(Bucket=vbucket, Key="doc.txt"))
        expect(status == 404 and code == "NoSuchKey", f"get after delete: {status} {code}")
        listing = s3.list_object_versions(Bucket=vbucket, Prefix="doc.txt")
        markers = [(m["VersionId"], m["IsLatest"]) for m in listing.get("DeleteMarkers", [])]
        expect(markers == [(state["marker"], True)], f"delete markers {markers}")
        expect(len(listing.get("Versions", [])) == 2, "versions lost by the delete")
        old = s3.get_object(Bucket=vbucket, Key="doc.txt", VersionId=state["v2"])["Body"].read()
        expect(old == b"second", "version behind the marker unreadable")

    @check("versioning: deleting the delete marker restores the object")
    def _():
        s3.delete_object(Bucket=vbucket, Key="doc.txt", VersionId=state["marker"])
        cur = s3.get_object(Bucket=vbucket, Key="doc.txt")
        expect(cur["Body"].read() == b"second", "restored body differs")
        expect(cur["VersionId"] == state["v2"], f"restored VersionId {cur['VersionId']!r}")

    @check("versioning: deleting a version by id removes only that version")
    def _():
        s3.delete_object(Bucket=vbucket, Key="doc.txt", VersionId=state["v1"])
        vs = s3.list_object_versions(Bucket=vbucket, Prefix="doc.txt").get("Versions", [])
        expect([v["VersionId"] for v in vs] == [state["v2"]], f"versions {vs}")

    # --- Signature Version 2 (botocore's "s3" signer) ---------------------------------------
    s3v2 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(
            signature_version="s3",
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            connect_timeout=10,
            read_timeout=TIMEOUT,
        ),
    )
    v2_body = os.urandom(80_000)

    @check("SigV2: put_object and get_object")
    def _():
        s3v2.put_object(Bucket=bucket, Key="v2/obj.bin", Body=v2_body)
        got = s3v2.get_object(Bucket=bucket, Key="v2/obj.bin")["Body"].read()
        expect(got == v2_body, f"body differs: {len(got)} bytes back")

    # botocore signs a request to /bucket over /bucket/.
    @check("SigV2: list_objects and list_objects_v2 with a prefix")
    def _():
        s3.put_object(Bucket=bucket, Key="v2-not/other.bin", Body=b"other")
        for list_fn in (s3v2.list_objects, s3v2.list_objects_v2):
            keys = [o["Key"] for o in list_fn(Bucket=bucket, Prefix="v2/").get("Contents", [])]
            expect(keys == ["v2/obj.bin"], f"{list_fn.__name__}: keys {keys}")

    @check("SigV2: get_object_acl and get_bucket_versioning (sub-resources)")
    def _():
        grants = s3v2.get_object_acl(Bucket=bucket, Key="v2/obj.bin")["Grants"]
        expect(any(g["Permission"] == "FULL_CONTROL" for g in grants), f"grants {grants}")
        s3v2.get_bucket_versioning(Bucket=bucket)

    @check("SigV2: presigned GET URL fetched with curl")
    def _():
        url = s3v2.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "v2/obj.bin"}, ExpiresIn=300
        )
        expect("AWSAccessKeyId=" in url and "X-Amz-" not in url, f"not a V2 URL: {url}")
        with tempfile.NamedTemporaryFile() as out:
            done = subprocess.run(
                ["curl", "-sS", "-m", str(TIMEOUT), "-o", out.name, "-w", "%{http_code}", url],
                capture_output=True,
                text=True,
                timeout=TIMEOUT + 10,
            )
            expect(done.stdout == "200", f"curl: {done.stdout} {done.stderr}")
            got = open(out.name, "rb").read()
        expect(got == v2_body, f"body differs: {len(got)} bytes back")

    @check("SigV2: expired presigned URL is refused (403 AccessDenied)")
    def _():
        url = s3v2.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": "v2/obj.bin"}, ExpiresIn=-60
        )
        r = requests.get(url, timeout=TIMEOUT)
        expect(r.status_code == 403 and b"Request has expired" in r.content, describe(r))

    @check("SigV2: delete_object")
    def _():
        s3v2.delete_object(Bucket=bucket, Key="v2/obj.bin")
        code, _status = client_error_code(lambda: s3v2.head_object(Bucket=bucket, Key="v2/obj.bin"))
        expect(code in ("404", "NoSuchKey"), f"head after delete: {code}")

    print(f"boto3: {passed} passed, {failed} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
