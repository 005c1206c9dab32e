"""test_s3.py — the S3 store backend against a real S3 server: moto's
(`moto_server`, started here on a free loopback port), and the same
conformance suite on a local folder.

1. moto with signature checking on (INITIAL_NO_AUTH_ACTION_COUNT: the setup
   requests go first, unchecked, then every request must be signed by an
   IAM user's key): tests/store_conform.c on s3://BUCKET/PREFIX with plain
   keys (moto's own checker rejects boto3's signatures too once a path or
   query needs percent-encoding, so odd keys and listings run in 2); the
   temporary credentials (STS AssumeRole: a session token);
   a wrong secret and a missing bucket refused at open with a message that
   names what to fix and never holds the secret.
2. moto without signature checks (its auth mode cannot take presigned URLs):
   the whole suite (odd UTF-8 keys, a listing over two pages), the presigned
   GET and PUT URLs kiln hands out fetched with urllib (no credentials), and requests through a proxy that answers 503 SlowDown
   to every other request (kiln retries; nothing fails).
3. the same suite on a local folder (file:PATH).
4. `kiln serve` with `store: s3://…`: an upload, a reframe job (whole and in 3
   chunks) and the output fetched straight from the bucket by its presigned
   URL, equal (framemd5) to the same job on a local store.

usage: test_s3.py KILN STORE_CONFORM"""
import hashlib, shutil, http.client, http.server, json, os, socket, socketserver, subprocess, sys, tempfile, threading, time, urllib.request
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kilnt  # noqa: E402
from kilnt import check, done, Server  # noqa: E402

KILN, CONFORM = sys.argv[1], sys.argv[2]
kilnt.KILN = KILN
T = tempfile.mkdtemp(prefix="kiln-s3-")
procs = []


free_port = kilnt.free_port


def moto(auth_after=None):
    port = free_port()
    env = dict(os.environ)
    if auth_after is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(auth_after)
    p = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(T, f"moto-{port}.log"), "w"))
    procs.append(p)
    url = f"http://127.0.0.1:{port}"
    if not kilnt.http_up(url + "/moto-api/", 30):
        raise SystemExit("moto_server did not start")
    return url


def conform(url, env, cache, label, expect_ok=True):
    e = dict(os.environ, **{k: str(v) for k, v in env.items()})
    r = subprocess.run([CONFORM, url, cache], env=e, capture_output=True, text=True, timeout=600)
    if expect_ok:
        check(f"{label}: the conformance suite passes", r.returncode == 0, [l for l in r.stderr.splitlines() if "FAIL" in l][:6] or r.stdout[-600:])
    return r


if not shutil.which("moto_server"):
    print("FAIL: moto_server is not installed: the S3 tests need it (pip install 'moto[server]'; it is in the CI machine's Python)")
    sys.exit(1)
try:
    import boto3
    # ---- 1. signatures checked
    M = moto(auth_after=9)
    kw = dict(endpoint_url=M, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
    iam = boto3.client("iam", **kw)
    iam.create_user(UserName="kiln")
    key = iam.create_access_key(UserName="kiln")["AccessKey"]
    allow = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    iam.put_user_policy(UserName="kiln", PolicyName="all", PolicyDocument=allow)
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]})
    role = iam.create_role(RoleName="kiln-role", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName="kiln-role", PolicyName="all", PolicyDocument=allow)
    sts = boto3.client("sts", **kw).assume_role(RoleArn=role, RoleSessionName="kiln")["Credentials"]
    boto3.client("s3", **kw).create_bucket(Bucket="kiln-test")
    creds = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    base = dict(creds, KILN_TEST_ENDPOINT=M, KILN_TEST_PLAIN="1", KILN_TEST_COPY_MAX="6000000")
    conform("s3://kiln-test/signed", base, os.path.join(T, "c1"), "moto, signatures checked")
    tmp = {"AWS_ACCESS_KEY_ID": sts["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": sts["SecretAccessKey"],
           "AWS_SESSION_TOKEN": sts["SessionToken"], "KILN_TEST_ENDPOINT": M, "KILN_TEST_PLAIN": "1", "KILN_TEST_LIST_KEYS": "0"}
    conform("s3://kiln-test/session", tmp, os.path.join(T, "c2"), "moto, temporary credentials (session token)")
    bad = dict(base, AWS_SECRET_ACCESS_KEY="not-the-secret-0123456789", KILN_TEST_TRIES="2")
    r = conform("s3://kiln-test/x", bad, os.path.join(T, "c3"), "wrong secret", expect_ok=False)
    check("a wrong secret is refused at open, naming what to check, not the secret",
          r.returncode == 3 and "AWS_SECRET_ACCESS_KEY" in r.stdout and "403" in r.stdout
          and "not-the-secret" not in r.stdout + r.stderr, r.stdout + r.stderr)
    r = conform("s3://no-such-bucket/x", base, os.path.join(T, "c4"), "no bucket", expect_ok=False)
    check("a missing bucket is refused at open, by name", r.returncode == 3 and "no-such-bucket" in r.stdout and
          "does not exist" in r.stdout, r.stdout)
    r = conform("s3://kiln-test/x", {"AWS_ACCESS_KEY_ID": "", "KILN_TEST_ENDPOINT": M}, os.path.join(T, "c5"), "no keys", expect_ok=False)
    check("no credentials: the message names the variables", r.returncode == 3 and "AWS_ACCESS_KEY_ID" in r.stdout, r.stdout)

    # ---- 2. the whole suite; retries through a flaky proxy
    N = moto()
    boto3.client("s3", endpoint_url=N, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b").create_bucket(Bucket="kiln-open")
    anyk = {"AWS_ACCESS_KEY_ID": "AKIAKILNTEST", "AWS_SECRET_ACCESS_KEY": "kiln-test-secret", "KILN_TEST_ENDPOINT": N}
    r = conform("s3://kiln-open/full/prefix", anyk, os.path.join(T, "c6"), "moto, odd keys and two list pages")
    urls = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.startswith("PRESIGNED_"))
    try:
        got = urllib.request.urlopen(urls.get("PRESIGNED_GET", "http://0/"), timeout=10).read()
    except Exception as ex:
        got = ex
    check("a presigned GET URL is the bucket's own, fetched without credentials", got == b"presigned bytes" and
          urls["PRESIGNED_GET"].startswith(N + "/kiln-open/full/prefix/c/p/out.txt?"), (got, urls))
    try:
        rq = urllib.request.Request(urls.get("PRESIGNED_PUT", "http://0/"), data=b"uploaded by URL", method="PUT",
                                    headers={"Content-Type": "application/octet-stream"})
        st = urllib.request.urlopen(rq, timeout=10).status
        body = boto3.client("s3", endpoint_url=N, region_name="us-east-1", aws_access_key_id="a",
                            aws_secret_access_key="b").get_object(Bucket="kiln-open", Key="full/prefix/c/p/up.txt")["Body"].read()
    except Exception as ex:
        st, body = ex, None
    check("a presigned PUT URL stores the object", st == 200 and body == b"uploaded by URL", (st, body))

    flaky = {"n": 0, "refused": 0}

    class Flaky(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def handle_one(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else None
            flaky["n"] += 1
            if flaky["n"] % 2 == 1:
                flaky["refused"] += 1
                msg = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                self.send_response(503)
                self.send_header("Content-Length", str(len(msg)))
                self.end_headers()
                if self.command != "HEAD":             # a HEAD answer has no body
                    self.wfile.write(msg)
                return
            h = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            up = http.client.HTTPConnection("127.0.0.1", int(N.rsplit(":", 1)[1]), timeout=30)
            up.request(self.command, self.path, body=body, headers=h)
            resp = up.getresponse()
            data = resp.read()
            self.send_response(resp.status)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "server", "date"):
                    self.send_header(k, v)
            if resp.getheader("Content-Length") is None:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            up.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_one

        def log_message(self, *a):
            pass

    class TS(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
    px = TS(("127.0.0.1", 0), Flaky)
    threading.Thread(target=px.serve_forever, daemon=True).start()
    fl = dict(anyk, KILN_TEST_ENDPOINT=f"http://127.0.0.1:{px.server_address[1]}", KILN_TEST_LIST_KEYS="20", KILN_TEST_BACKOFF_MS="5")
    conform("s3://kiln-open/flaky", fl, os.path.join(T, "c7"), "every other request answered 503 SlowDown")
    check("the proxy refused half the requests and kiln retried each", flaky["refused"] > 50 and flaky["n"] >= 2 * flaky["refused"] - 1, flaky)
    r = conform("s3://kiln-open/x", dict(anyk, KILN_TEST_ENDPOINT=f"http://127.0.0.1:{free_port()}", KILN_TEST_TRIES="3",
                                          KILN_TEST_BACKOFF_MS="5"), os.path.join(T, "c8"), "nothing listening", expect_ok=False)
    check("an endpoint that does not answer: the error names it and the tries", r.returncode == 3 and "cannot reach the S3 endpoint" in r.stdout
          and "3 tries" in r.stdout, r.stdout)

    # ---- 3. the same suite on a local folder
    conform("file:" + os.path.join(T, "local-store"), {}, os.path.join(T, "c9"), "a local folder")

    # ---- 4. kiln serve on S3: whole and chunked, the output fetched from the bucket
    clip = os.path.join(T, "in.mp4")
    subprocess.run([KILN, "sample", "bars", clip, "--seconds", "6", "--size", "320x240", "--fps", "25", "--tone", "440"],
                   check=True, capture_output=True)
    data = open(clip, "rb").read()
    common = "lease_s: 3\nretry_delay_s: 0.2\nslots: {cpu: 4}\nfunctions:\n  reframe: {max_workers: 3, idle_timeout_s: 20, cpus: 1}\n"
    os.environ.update({"AWS_ACCESS_KEY_ID": anyk["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": anyk["AWS_SECRET_ACCESS_KEY"]})
    S = Server(os.path.join(T, "s3home"), common + f"store: s3://kiln-open/serve\nstore_endpoint: {N}\n")
    L = Server(os.path.join(T, "localhome"), common)
    params = {"width": 180, "height": 320, "crf": 0, "preset": "ultrafast"}

    def run(srv, chunks):
        s, b, _ = srv.req("PUT", "/v1/objects/in/clip.mp4", data)
        if not check("upload", s == 201, b):
            return None
        s, b, _ = srv.req("POST", "/v1/functions/reframe/spawn", {"input": "in/clip.mp4", "params": params, "plan": {"chunks": chunks}})
        if not check("spawn", s == 202, b):
            return None
        j = srv.wait_end(b["job_id"], 240)
        check(f"the job succeeds (chunks {chunks})", j["state"] == "succeeded", j.get("error"))
        return j

    def framemd5(path):
        r = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-map", "0:v", "-f", "framemd5", "-"], capture_output=True, text=True)
        return [l.split(",")[-1] for l in r.stdout.splitlines() if not l.startswith("#")]

    ref = run(L, 1)
    ref_path = os.path.join(T, "ref.mp4")
    with urllib.request.urlopen(ref["result"]["outputs"][0]["url"], timeout=30) as f:
        open(ref_path, "wb").write(f.read())
    want = framemd5(ref_path)
    for chunks in (1, 3):
        j = run(S, chunks)
        if not j or j["state"] != "succeeded":
            continue
        u = j["result"]["outputs"][0]["url"]
        check(f"chunks {chunks}: the output URL is the bucket's", u.startswith(N + "/kiln-open/serve/jobs/"), u)
        p = os.path.join(T, f"s3-{chunks}.mp4")
        with urllib.request.urlopen(u, timeout=30) as f:
            open(p, "wb").write(f.read())
        got = framemd5(p)
        check(f"chunks {chunks}: output from S3 equals the local store's (framemd5, {len(want)} frames)", got == want and len(want) == 150,
              (len(got), len(want)))
        if chunks == 3:
            check("chunks 3: split in 3", (j.get("plan") or {}).get("chunks") == 3, j.get("plan"))
            keys = [o["Key"] for o in boto3.client("s3", endpoint_url=N, region_name="us-east-1", aws_access_key_id="a",
                                                   aws_secret_access_key="b").list_objects_v2(Bucket="kiln-open", Prefix="serve/jobs/" + j["job_id"]).get("Contents", [])]
            check("chunks 3: the chunk objects are gone after the join", keys == ["serve/jobs/" + j["job_id"] + "/output.mp4"], keys)
    s, b, _ = S.req("POST", "/v1/objects/in/clip.mp4/presign", {"method": "GET", "ttl": 60})
    check("POST presign answers the bucket's URL", s == 200 and b["url"].startswith(N + "/kiln-open/serve/in/clip.mp4?X-Amz-"), b)
    s, b, _ = S.req("GET", "/v1/objects/in/clip.mp4", raw=True)
    check("GET /v1/objects streams the object from S3", s == 200 and b == data, (s, len(b) if isinstance(b, bytes) else b))
finally:
    for srv in kilnt.servers:
        srv.stop()
    for p in procs:
        p.terminate()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
    __import__("shutil").rmtree(T, ignore_errors=True)
sys.exit(done())
