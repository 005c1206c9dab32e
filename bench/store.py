"""bench/store.py — upload and download MB/s through `kiln serve`'s object API
(PUT and GET /v1/objects) with the local store and with the S3 store on a
moto_server on loopback, in one run, plus GET straight from the bucket by a
presigned URL (what clients do with outputs on S3). Each cell is the median
and, after the slash, the worst of 5 transfers of one 64 MiB object of random
bytes (a fresh object each time; nothing here was tuned on these runs).

usage: python3 bench/store.py [build/kiln] [MiB]"""
import os, socket, statistics, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import kilnt  # noqa: E402

KILN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "build/kiln")
MIB = int(sys.argv[2]) if len(sys.argv) > 2 else 64
kilnt.KILN = KILN
T = tempfile.mkdtemp(prefix="kiln-bench-store-")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
moto = subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
M = f"http://127.0.0.1:{port}"
try:
    kilnt.until(lambda: subprocess.run(["curl", "-sf", M + "/moto-api/"], capture_output=True).returncode == 0, 30)
    subprocess.run(["curl", "-sf", "-X", "PUT", M + "/bench"], check=True, capture_output=True)
    os.environ.update(AWS_ACCESS_KEY_ID="AKIABENCH", AWS_SECRET_ACCESS_KEY="bench-secret")
    conf = "max_upload_bytes: 10737418240\n"
    servers = {"local": kilnt.Server(os.path.join(T, "local"), conf),
               "s3 (moto)": kilnt.Server(os.path.join(T, "s3"), conf + f"store: s3://bench/kiln\nstore_endpoint: {M}\n")}
    data = os.urandom(MIB << 20)
    rows = []
    for name, srv in servers.items():
        up, down, direct = [], [], []
        for i in range(5):
            t = time.perf_counter(); st, b, _ = srv.req("PUT", f"/v1/objects/bench/o{i}.bin", data); up.append(time.perf_counter() - t)
            assert st == 201, b
            t = time.perf_counter(); st, b, _ = srv.req("GET", f"/v1/objects/bench/o{i}.bin", raw=True); down.append(time.perf_counter() - t)
            assert st == 200 and len(b) == len(data)
            if name.startswith("s3"):
                st, b, _ = srv.req("POST", f"/v1/objects/bench/o{i}.bin/presign", {"method": "GET"})
                t = time.perf_counter(); got = urllib.request.urlopen(b["url"]).read(); direct.append(time.perf_counter() - t)
                assert got == data
        mb = MIB * 1.048576
        def cell(ts):
            return f"{mb / statistics.median(ts):.0f} / {mb / max(ts):.0f}" if ts else "—"
        rows.append((name, cell(up), cell(down), cell(direct)))
    cpu = subprocess.run("lscpu | sed -n 's/^Model name: *//p'", shell=True, capture_output=True, text=True).stdout.strip()
    print(f"{MIB} MiB object, MB/s as median / worst of 5, {os.cpu_count()} CPUs: {cpu}")
    print("| store | PUT /v1/objects | GET /v1/objects | GET presigned, from the bucket |")
    print("|---|---|---|---|")
    for n, u, d, x in rows:
        print(f"| {n} | {u} | {d} | {x} |")
finally:
    for srv in kilnt.servers:
        srv.stop()
    moto.terminate()
    subprocess.run(["rm", "-rf", T])
