// tests/test_deploy.mjs — deploy/ checked offline, with no cluster (Node 20):
//   node tests/test_deploy.mjs path/to/kiln
// Every YAML under deploy/kubernetes is parsed and each object validated with npm
// kubernetes-models and @kubernetes-models/keda (pinned in tests/deploy/package-lock.json,
// installed by tests/peers.py --lock), and checked for unknown fields against the same
// packages' type declarations (their validate() lets unknown fields through). Then what
// kiln needs of them: secrets only from Secrets, probes on /health at the port config.yaml
// listens on, GPU pods asking for nvidia.com/gpu, each KEDA query counting exactly its
// class's functions (from `kiln functions --json` and the ConfigMap) and counting right
// on a real PostgreSQL (started here), kustomizations listing every file, the config
// files accepted by kiln itself, the systemd units (systemd-analyze verify when present).
// Negative cases prove each kind of check fails when it should.
import { execFileSync, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const kiln = process.argv[2];
if (!kiln) { console.error("usage: node tests/test_deploy.mjs path/to/kiln"); process.exit(2); }
const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const kdir = path.join(repo, "deploy", "kubernetes");
const sdir = path.join(repo, "deploy", "systemd");
let failed = 0;
const fail = (msg) => { failed++; console.log(`FAIL ${msg}`); };
const ok = (msg) => console.log(`ok   ${msg}`);
const expect = (problems, what) => (problems.length ? problems.forEach((p) => fail(`${what}: ${p}`)) : ok(what));
const clone = (o) => JSON.parse(JSON.stringify(o));

// -- the npm packages (pinned, integrity-checked, cached; a failure to fetch fails the test)
let nm;
try {
  nm = execFileSync("python3", [path.join(repo, "tests", "peers.py"), "--lock", path.join(repo, "tests", "deploy")],
                    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] }).trim().split("\n").pop();
} catch (e) { console.error("test_deploy: cannot install the npm packages (tests/peers.py --lock tests/deploy)"); process.exit(1); }
const req = createRequire(path.join(nm, "package.json"));
const YAML = req("yaml");
const MODELS = {
  "v1/ConfigMap": ["kubernetes-models/v1/ConfigMap", "ConfigMap"],
  "v1/Service": ["kubernetes-models/v1/Service", "Service"],
  "apps/v1/Deployment": ["kubernetes-models/apps/v1/Deployment", "Deployment"],
  "keda.sh/v1alpha1/ScaledObject": ["@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject", "ScaledObject"],
  "keda.sh/v1alpha1/ScaledJob": ["@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob", "ScaledJob"],
  "keda.sh/v1alpha1/TriggerAuthentication": ["@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication", "TriggerAuthentication"],
};
const modelOf = (o) => MODELS[`${o.apiVersion}/${o.kind}`];

// -- unknown fields: the object walked along the interfaces of the packages' .d.ts files
const dtsCache = new Map();
function dtsType(spec) {                   // spec: module path without .d.ts -> {keys} of its interface
  if (dtsCache.has(spec)) return dtsCache.get(spec);
  const file = req.resolve(spec).replace(/\.js$/, ".d.ts");
  const text = fs.readFileSync(file, "utf8").split("\n").filter((l) => !/^\s*(\/\*\*|\*)/.test(l));
  const imports = {};
  for (const l of text) {
    const m = /^import \{ (\w+) \} from "([^"]+)"/.exec(l);
    if (m) imports[m[1]] = m[2].startsWith(".") ? path.posix.join(path.posix.dirname(spec), m[2]) : m[2];
  }
  const start = text.findIndex((l) => /^export interface \w+/.test(l));
  let t = null;
  if (start >= 0) { const pos = { i: start + 1 }; t = parseBlock(text, pos, imports); }
  dtsCache.set(spec, t);
  return t;
}
function parseBlock(lines, pos, imports) {  // lines after a "{" up to its "}": {keys: {k: type}} or {any: type}
  const t = { keys: {} };
  for (; pos.i < lines.length; pos.i++) {
    const l = lines[pos.i].trim();
    if (/^}/.test(l)) return t;
    const anyKey = /^\[key: string\]: (.*?);?$/.exec(l);
    const m = /^"([^"]+)"\??: (.*)$/.exec(l) || (anyKey && [null, null, anyKey[1]]);
    if (!m) continue;
    let ty = m[2].replace(/;$/, "");
    const arr = ty.startsWith("Array<");  // Array<IFoo>, Array<string>, or Array<{ ... }> over lines
    if (arr) ty = ty.slice(6).replace(/>$/, "");
    let sub;
    if (ty.endsWith("{")) { pos.i++; sub = parseBlock(lines, pos, imports); }
    else if (imports[ty]) sub = { ref: imports[ty] };
    else sub = null;                       // a primitive, a string union, number | string
    const v = arr ? { array: sub } : sub;
    if (m[1] === null) t.any = v; else t.keys[m[1]] = v;
  }
  return t;
}
function unknownFields(v, t, at, out) {
  if (!t || v === null || typeof v !== "object") return out;
  if (t.ref) return unknownFields(v, dtsType(t.ref), at, out);
  if (t.array !== undefined) { if (Array.isArray(v)) v.forEach((x, i) => unknownFields(x, t.array, `${at}[${i}]`, out)); return out; }
  if (Array.isArray(v)) return out;
  for (const [k, x] of Object.entries(v)) {
    if (k in t.keys) unknownFields(x, t.keys[k], `${at}.${k}`, out);
    else if (t.any !== undefined) unknownFields(x, t.any, `${at}.${k}`, out);
    else out.push(`unknown field ${at}.${k}`);
  }
  return out;
}
function validateObject(o) {               // problems of one object: schema errors, unknown fields
  const m = modelOf(o);
  if (!m) return [`no model for ${o.apiVersion}/${o.kind} (add it to MODELS in tests/test_deploy.mjs)`];
  const Model = req(m[0])[m[1]];
  const problems = [];
  try { new Model(clone(o)).validate(); } catch (e) { problems.push(e.message); }
  return unknownFields(o, { ref: m[0] }, o.kind, problems);
}

// -- the files: objects, kustomizations, kustomize configurations
function yamlFiles(d) {
  return fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? yamlFiles(path.join(d, e.name)) : /\.ya?ml$/.test(e.name) ? [path.join(d, e.name)] : []);
}
function parseDocs(file, text) {
  const docs = YAML.parseAllDocuments(text);
  const out = [];
  for (const d of docs) {
    if (d.errors.length) { fail(`${file}: YAML: ${d.errors[0].message}`); continue; }
    const o = d.toJS();
    if (o !== null) out.push(o);
  }
  return out;
}
const rel = (f) => path.relative(repo, f);
const objects = [], kustomizations = [];
const files = yamlFiles(kdir);
const kconfigs = new Set();
for (const f of files) {
  for (const o of parseDocs(rel(f), fs.readFileSync(f, "utf8"))) {
    if (o.kind === "Kustomization") {
      kustomizations.push({ file: f, k: o });
      for (const c of o.configurations || []) kconfigs.add(path.resolve(path.dirname(f), c));
    } else objects.push({ file: f, o });
  }
}
for (const { file, o } of objects) {
  if (kconfigs.has(file)) continue;
  if (o.kind === "Secret") { fail(`${rel(file)}: a Secret in the repository (they are made by hand: deploy/README.md)`); continue; }
  expect(validateObject(o), `${rel(file)}: ${o.kind} ${o.metadata?.name} validates`);
}
const objs = objects.filter(({ file }) => !kconfigs.has(file)).map(({ o }) => o);
const find = (kind, name) => objs.find((o) => o.kind === kind && o.metadata?.name === name);
const byKind = (kind) => objs.filter((o) => o.kind === kind);
{
  const seen = new Set(), dup = [];
  for (const o of objs) { const k = `${o.kind}/${o.metadata?.name}`; if (seen.has(k)) dup.push(k); seen.add(k); }
  expect(dup.map((k) => `${k} defined twice`), "object names are unique per kind");
}

// -- kustomize: every file listed by exactly one kustomization; every entry exists;
// delete patches name objects that exist
{
  const problems = [], listed = new Map();
  for (const { file, k } of kustomizations) {
    const dir = path.dirname(file);
    for (const r of k.resources || []) {
      const p = path.resolve(dir, r);
      if (fs.existsSync(p) && fs.statSync(p).isDirectory()) {
        if (!fs.existsSync(path.join(p, "kustomization.yaml"))) problems.push(`${rel(file)}: ${r} is a folder without kustomization.yaml`);
      } else if (!fs.existsSync(p)) problems.push(`${rel(file)}: ${r} does not exist`);
      else listed.set(p, (listed.get(p) || 0) + 1);
    }
    for (const c of k.configurations || [])
      if (!fs.existsSync(path.resolve(dir, c))) problems.push(`${rel(file)}: configuration ${c} does not exist`);
    for (const pt of k.patches || []) {
      const p = pt.patch ? YAML.parse(pt.patch) : null;
      if (p && p.$patch === "delete" && !find(p.kind, p.metadata?.name))
        problems.push(`${rel(file)}: a patch deletes ${p.kind} ${p.metadata?.name}, which no file defines`);
    }
    if (k.namespace) problems.push(`${rel(file)}: sets a namespace (the manifests are namespace-agnostic)`);
  }
  for (const f of files) {
    if (path.basename(f) === "kustomization.yaml" || kconfigs.has(f)) continue;
    if ((listed.get(f) || 0) !== 1) problems.push(`${rel(f)} is listed by ${listed.get(f) || 0} kustomizations (want 1)`);
  }
  for (const o of objs) if (o.metadata?.namespace) problems.push(`${o.kind} ${o.metadata.name} names namespace ${o.metadata.namespace}`);
  expect(problems, "kustomizations list every file once, and what they name exists");
}

// -- the function classes: `kiln functions --json`, then the ConfigMap's functions.*.gpu; join is CPU
const cm = find("ConfigMap", "kiln-config");
if (!cm || !cm.data?.["config.yaml"]) { fail("deploy/kubernetes: no ConfigMap kiln-config with config.yaml"); process.exit(1); }
const kcfg = YAML.parse(cm.data["config.yaml"]) || {};
const classes = { cpu: new Set(["join"]), gpu: new Set() };
for (const f of JSON.parse(execFileSync(kiln, ["functions", "--json"], { encoding: "utf8" }))) {
  let gpu = f.resources.gpu;
  const o = kcfg.functions?.[f.name];
  if (o && "gpu" in o) gpu = o.gpu === "cpu" || o.gpu === null ? null : o.gpu;
  classes[gpu ? "gpu" : "cpu"].add(f.name);
}
ok(`classes: cpu = ${[...classes.cpu].join(", ")}; gpu = ${[...classes.gpu].join(", ")}`);

// -- kiln accepts the config files (kiln plan loads $KILN_HOME/config.yaml, checks every key)
function kilnConfigProblems(text) {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), "kiln-deploy-"));
  try {
    fs.writeFileSync(path.join(home, "config.yaml"), text);
    const env = { ...process.env, KILN_HOME: home };
    for (const v of ["KILN_QUEUE", "KILN_STORE", "KILN_URL", "KILN_TOKEN"]) delete env[v];
    const r = spawnSync(kiln, ["plan", "noop"], { env, encoding: "utf8" });
    return r.status === 0 ? [] : [(r.stderr || r.stdout || `exit ${r.status}`).trim()];
  } finally { fs.rmSync(home, { recursive: true, force: true }); }
}
expect(kilnConfigProblems(cm.data["config.yaml"]), "kiln accepts the ConfigMap's config.yaml");
expect(kilnConfigProblems(fs.readFileSync(path.join(sdir, "config.yaml"), "utf8")), "kiln accepts deploy/systemd/config.yaml");
const listenPort = Number(String(kcfg.listen || "127.0.0.1:8420").split(":").pop());

// -- pods: where secrets come from, images, hardening, volumes
const SECRET_ENV = /^(AWS_|KILN_QUEUE$|KILN_TOKEN$)|PASSWORD|SECRET|TOKEN|CREDENTIAL/i;
const URL_WITH_PASSWORD = /:\/\/[^/\s:@]+:[^@\s/]+@/;
function podSpecOf(o) {
  if (o.kind === "Deployment") return o.spec?.template?.spec;
  if (o.kind === "ScaledJob") return o.spec?.jobTargetRef?.template?.spec;
  return null;
}
function podProblems(o) {
  const ps = podSpecOf(o), out = [];
  const vols = new Map((ps.volumes || []).map((v) => [v.name, v]));
  for (const v of ps.volumes || [])
    if (v.configMap && !find("ConfigMap", v.configMap.name)) out.push(`volume ${v.name}: no ConfigMap ${v.configMap.name}`);
  for (const c of [...(ps.initContainers || []), ...(ps.containers || [])]) {
    const at = `container ${c.name}`;
    if (c.image !== "kiln") out.push(`${at}: image ${c.image} (the kustomizations set the image for "kiln")`);
    for (const e of c.env || []) {
      if (SECRET_ENV.test(e.name) && !e.valueFrom?.secretKeyRef) out.push(`${at}: ${e.name} is not from a secretKeyRef`);
      if (e.value !== undefined && (URL_WITH_PASSWORD.test(e.value) || /^(AKIA|ASIA)[A-Z0-9]{12,}/.test(e.value)))
        out.push(`${at}: ${e.name} holds a credential literally`);
      if (e.valueFrom?.configMapKeyRef && SECRET_ENV.test(e.name)) out.push(`${at}: ${e.name} from a ConfigMap`);
    }
    for (const ef of c.envFrom || []) if (ef.configMapRef) out.push(`${at}: envFrom a ConfigMap (secrets could land there)`);
    for (const a of [...(c.args || []), ...(c.command || [])])
      if (URL_WITH_PASSWORD.test(a) || /^--(queue|store)=?/.test(a)) out.push(`${at}: "${a}" on the command line (use KILN_QUEUE/KILN_STORE from a Secret)`);
    const sc = c.securityContext || {};
    if (sc.allowPrivilegeEscalation !== false || sc.readOnlyRootFilesystem !== true || !(sc.capabilities?.drop || []).includes("ALL"))
      out.push(`${at}: securityContext must drop ALL, forbid privilege escalation, mount the root read-only`);
    if (!c.resources?.requests || !c.resources?.limits?.memory) out.push(`${at}: needs resource requests and a memory limit`);
    for (const vm of c.volumeMounts || []) if (!vols.has(vm.name)) out.push(`${at}: mounts ${vm.name}, not a volume of the pod`);
  }
  if (!ps.securityContext?.runAsNonRoot) out.push("pod securityContext.runAsNonRoot is not true");
  const main = (ps.containers || []).find((c) => c.name === "kiln");
  if (!main) return [...out, "no container named kiln"];
  const home = (main.env || []).find((e) => e.name === "KILN_HOME")?.value;
  if (!home) out.push("kiln: KILN_HOME is not set");
  else {
    const hm = (main.volumeMounts || []).find((m) => m.mountPath === home);
    if (!hm || !vols.get(hm.name)?.emptyDir) out.push(`kiln: ${home} (KILN_HOME) is not a writable emptyDir`);
    const cfgm = (main.volumeMounts || []).find((m) => m.mountPath === `${home}/config.yaml`);
    if (!cfgm || vols.get(cfgm.name)?.configMap?.name !== "kiln-config" || cfgm.subPath !== "config.yaml")
      out.push(`kiln: ${home}/config.yaml is not the ConfigMap's config.yaml`);
  }
  for (const v of ["KILN_QUEUE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
    if (!(main.env || []).some((e) => e.name === v)) out.push(`kiln: no ${v} (it reaches the queue and the store)`);
  return out;
}
const pods = objs.filter(podSpecOf);
for (const o of pods) expect(podProblems(o), `${o.kind} ${o.metadata.name}: secrets from Secrets, hardened, volumes and config in place`);

// KEDA reads the same database as the pods
const qref = (o) => (podSpecOf(o).containers.find((c) => c.name === "kiln").env || []).find((e) => e.name === "KILN_QUEUE")?.valueFrom?.secretKeyRef;
{
  const problems = [];
  for (const ta of byKind("TriggerAuthentication")) {
    const c = (ta.spec.secretTargetRef || []).find((s) => s.parameter === "connection");
    if (!c) { problems.push(`${ta.metadata.name}: no secretTargetRef for parameter connection`); continue; }
    for (const o of pods) {
      const r = qref(o);
      if (r && (r.name !== c.name || r.key !== c.key)) problems.push(`${o.metadata.name}'s KILN_QUEUE is ${r.name}/${r.key}, KEDA's ${c.name}/${c.key}`);
    }
  }
  expect(problems, "KEDA's connection is the pods' KILN_QUEUE Secret");
}

// -- the API: kiln serve --no-workers, probes on /health at the listen port, the Service
function slotsOf(c) {
  const a = c.args || [], i = a.indexOf("--slots"), s = { cpu: null, gpu: null };
  if (i >= 0) for (const kv of String(a[i + 1]).split(",")) { const [k, v] = kv.split("="); s[k] = Number(v); }
  return s;
}
function apiProblems(d) {
  const out = [], c = d.spec.template.spec.containers.find((x) => x.name === "kiln");
  const args = c.args || [];
  if (args[0] !== "serve" || !args.includes("--no-workers")) out.push(`args ${JSON.stringify(args)}: want serve --no-workers`);
  if (d.spec.replicas !== 2) out.push(`replicas ${d.spec.replicas}, want 2`);
  const li = args.indexOf("--listen"), port = li >= 0 ? Number(String(args[li + 1]).split(":").pop()) : listenPort;
  const portOf = (p) => (typeof p === "number" ? p : (c.ports || []).find((x) => x.name === p)?.containerPort);
  if (!(c.ports || []).some((p) => p.containerPort === port)) out.push(`no containerPort ${port} (config.yaml listens there)`);
  for (const pr of ["readinessProbe", "livenessProbe"]) {
    const g = c[pr]?.httpGet;
    if (!g || g.path !== "/health" || portOf(g.port) !== port) out.push(`${pr} is not httpGet /health on port ${port}`);
  }
  const lbl = d.spec.template.metadata.labels;
  const svc = byKind("Service").find((s) => Object.entries(s.spec.selector || {}).every(([k, v]) => lbl[k] === v));
  if (!svc) out.push("no Service selects its pods");
  else for (const p of svc.spec.ports) if (portOf(p.targetPort ?? p.port) !== port) out.push(`Service ${svc.metadata.name} port ${p.name} misses ${port}`);
  return out;
}
const deployments = byKind("Deployment");
for (const d of deployments) {
  const sel = d.spec.selector?.matchLabels || {}, lbl = d.spec.template?.metadata?.labels || {};
  if (!Object.entries(sel).every(([k, v]) => lbl[k] === v)) fail(`Deployment ${d.metadata.name}: the selector does not match its pods`);
}
const api = deployments.filter((d) => d.spec.template.spec.containers.find((c) => c.name === "kiln")?.args?.[0] === "serve");
if (api.length !== 1) fail(`want one Deployment running kiln serve, found ${api.length}`);
else expect(apiProblems(api[0]), `Deployment ${api[0].metadata.name}: kiln serve --no-workers, 2 replicas, probes on /health, Service`);

// -- workers: one agent pool per class; the GPU one asks for a GPU
const agentOf = (o) => podSpecOf(o).containers.find((c) => c.name === "kiln" && (c.args || [])[0] === "agent");
const classOf = (o) => (slotsOf(agentOf(o)).gpu > 0 ? "gpu" : "cpu");
function workerProblems(o) {
  const out = [], ps = podSpecOf(o), c = agentOf(o), s = slotsOf(c);
  if (s.cpu === null || s.gpu === null) return [`args ${JSON.stringify(c.args)}: want --slots cpu=N,gpu=M`];
  const g = (x) => Number(c.resources?.[x]?.["nvidia.com/gpu"] || 0);
  if (s.gpu > 0) {
    if (g("limits") !== s.gpu) out.push(`${s.gpu} GPU slots but limits nvidia.com/gpu ${g("limits")}`);
    if (s.cpu !== 0) out.push("a GPU pool with CPU slots would also run CPU tasks (and be scaled in under them)");
    if (!ps.nodeSelector && !ps.affinity) out.push("no nodeSelector or affinity for GPU nodes");
    if (!(ps.tolerations || []).some((t) => t.key === "nvidia.com/gpu")) out.push("no toleration for nvidia.com/gpu");
  } else if (g("limits") || g("requests")) out.push("a CPU pool asks for a GPU");
  if (s.cpu > 0 && Number(c.resources?.requests?.cpu) < s.cpu) out.push(`${s.cpu} CPU slots but requests cpu ${c.resources?.requests?.cpu}`);
  return out;
}
const workers = pods.filter(agentOf);
for (const o of workers) expect(workerProblems(o), `${o.kind} ${o.metadata.name}: a ${classOf(o)} pool, slots and resources agree`);
{
  const dc = deployments.filter(agentOf).map(classOf).sort().join(",");
  if (dc !== "cpu,gpu") fail(`want one agent Deployment per class (cpu, gpu), have ${dc}`); else ok("one agent Deployment per class");
}

// -- KEDA: targets, bounds, the query of each class
const QUERY_PARTS = [/\bFROM jobs\b/i, /\bkind\s*<>\s*3\b/, /\bstate IN \(0, 2\)/, /run_after_ms\s*<=\s*\(EXTRACT\(EPOCH FROM clock_timestamp\(\)\)\s*\*\s*1000\)::bigint/];
function queryProblems(q, cls, running) {
  const out = [], m = /\bfn IN \(([^)]*)\)/.exec(q || "");
  if (!m) return ["the query has no fn IN (...)"];
  const fns = m[1].split(",").map((s) => s.trim().replace(/^'|'$/g, "")).sort();
  const want = [...classes[cls]].sort();
  if (fns.join() !== want.join()) out.push(`the query counts fn ${fns.join(", ")}; the ${cls} class is ${want.join(", ")}`);
  for (const p of QUERY_PARTS) if (!p.test(q)) out.push(`the query lacks ${p}`);
  if (/\bstate = 1\b/.test(q) !== running) out.push(running ? "the query does not count running tasks (state = 1)" : "a ScaledJob's query counts running tasks");
  return out;
}
function triggerProblems(o, cls, running) {
  const out = [], ts = o.spec.triggers || [];
  if (ts.length !== 1 || ts[0].type !== "postgresql") return ["want one postgresql trigger"];
  const t = ts[0];
  if (!find("TriggerAuthentication", t.authenticationRef?.name)) out.push(`authenticationRef ${t.authenticationRef?.name}: no such TriggerAuthentication`);
  for (const k of ["host", "password", "connectionFromEnv", "passwordFromEnv", "userName"])
    if (t.metadata[k]) out.push(`metadata.${k}: the connection comes from the TriggerAuthentication only`);
  if (!(Number(t.metadata.targetQueryValue) > 0)) out.push(`targetQueryValue ${t.metadata.targetQueryValue}`);
  return [...out, ...queryProblems(t.metadata.query, cls, running)];
}
function scaledObjectProblems(so) {
  const out = [], ref = so.spec.scaleTargetRef;
  if ((ref.kind || "Deployment") !== "Deployment") return [`scaleTargetRef kind ${ref.kind}`];
  const d = find("Deployment", ref.name);
  if (!d) return [`scaleTargetRef ${ref.name}: no such Deployment`];
  if (!agentOf(d)) return [`scaleTargetRef ${ref.name} is not a kiln agent pool`];
  if (so.spec.minReplicaCount !== 0) out.push(`minReplicaCount ${so.spec.minReplicaCount}, want 0`);
  if (!(so.spec.maxReplicaCount > 0)) out.push("no maxReplicaCount");
  return [...out, ...triggerProblems(so, classOf(d), true)];
}
for (const so of byKind("ScaledObject")) expect(scaledObjectProblems(so), `ScaledObject ${so.metadata.name}: targets an agent pool, from 0, counts its class`);
for (const d of deployments.filter(agentOf)) {
  const n = byKind("ScaledObject").filter((s) => s.spec.scaleTargetRef.name === d.metadata.name).length;
  if (n !== 1) fail(`Deployment ${d.metadata.name} is scaled by ${n} ScaledObjects (want 1)`);
}
function scaledJobProblems(sj) {
  const out = [], c = agentOf(sj), a = c?.args || [];
  if (!c) return ["its pod runs no kiln agent"];
  const i = a.indexOf("--exit-when-idle");
  if (i < 0 || !(Number(a[i + 1]) > 0)) out.push("the agent has no --exit-when-idle SECONDS (a Job must end)");
  if (podSpecOf(sj).restartPolicy !== "Never") out.push("restartPolicy is not Never");
  if (sj.spec.scalingStrategy?.strategy !== "accurate") out.push("scalingStrategy is not accurate (the query leaves out running tasks)");
  return [...out, ...triggerProblems(sj, classOf(sj), false)];
}
const sjs = byKind("ScaledJob");
if (!sjs.length) fail("no ScaledJob variant");
for (const sj of sjs) expect(scaledJobProblems(sj), `ScaledJob ${sj.metadata.name}: one agent per Job that exits idle, counts runnable tasks`);

// -- the queries on a real PostgreSQL, on rows of every kind
function pgBin(name) {
  const dirs = fs.existsSync("/usr/lib/postgresql") ? fs.readdirSync("/usr/lib/postgresql").sort().reverse().map((v) => `/usr/lib/postgresql/${v}/bin`) : [];
  for (const d of [...dirs, ...(process.env.PATH || "").split(":")]) if (fs.existsSync(path.join(d, name))) return path.join(d, name);
  return null;
}
function runQueries(queries) {           // {name: sql} -> {name: count}; throws with the reason
  const initdb = pgBin("initdb"), pgctl = pgBin("pg_ctl"), psql = pgBin("psql");
  if (!initdb || !pgctl || !psql) throw new Error("PostgreSQL's server is not installed (Debian's postgresql package)");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kiln-deploy-pg-"));
  const root = process.getuid() === 0;    // PostgreSQL refuses to run as root: then as nobody
  if (root) fs.chownSync(dir, Number(execFileSync("id", ["-u", "nobody"], { encoding: "utf8" })), 0);
  const argv = (cmd, args) => (root ? ["runuser", ["-u", "nobody", "--", cmd, ...args]] : [cmd, args]);
  const run = (cmd, args, opts = {}) => {
    const r = spawnSync(...argv(cmd, args), { encoding: "utf8", ...opts });
    if (r.status !== 0) throw new Error(`${path.basename(cmd)}: ${(r.stderr || r.stdout || "").trim().slice(-600)}`);
    return r.stdout;
  };
  try {
    run(initdb, ["-D", `${dir}/db`, "-A", "trust", "-U", "kiln", "--no-sync"]);
    run(pgctl, ["-D", `${dir}/db`, "-o", `-c listen_addresses= -k ${dir} -c fsync=off`, "-l", `${dir}/log`, "-w", "start"]);
    const now = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint";
    const held = "9223372036854775807";
    // fn, state (0 queued 1 running 2 retrying 3 succeeded 4 failed 5 cancelled), run_after_ms, kind (3 split)
    const rows = [
      ["upscale", 0, `${now} - 1000`, 0], ["upscale", 1, "0", 1], ["upscale", 2, `${now} + 600000`, 1],
      ["upscale", 0, held, 0], ["upscale", 1, held, 3], ["upscale", 3, "0", 0], ["upscale", 2, `${now} - 5`, 1],
      ["reframe", 0, "0", 0], ["join", 0, held, 2], ["join", 2, `${now} - 1`, 2], ["remove_watermark", 1, "0", 0],
      ["overlay", 4, "0", 0], ["noop", 5, "0", 0], ["reframe", 1, held, 3], ["overlay", 0, `${now} + 60000`, 1],
    ];
    const sql = ["CREATE TABLE jobs(id BIGSERIAL PRIMARY KEY, fn TEXT NOT NULL, state BIGINT NOT NULL, run_after_ms BIGINT NOT NULL, kind BIGINT NOT NULL);",
      ...rows.map(([fn, st, ra, k]) => `INSERT INTO jobs(fn, state, run_after_ms, kind) VALUES ('${fn}', ${st}, ${ra}, ${k});`),
      ...Object.values(queries).map((q) => `${q};`)].join("\n");
    const out = run(psql, ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", dir, "-U", "kiln", "-d", "postgres"], { input: sql }).trim().split("\n");
    return Object.fromEntries(Object.keys(queries).map((k, i) => [k, Number(out[i])]));
  } finally {
    if (fs.existsSync(`${dir}/db/postmaster.pid`)) spawnSync(...argv(pgctl, ["-D", `${dir}/db`, "-m", "immediate", "stop"]), { stdio: "ignore" });
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
{
  // runnable now: upscale 2 (queued, retrying due), cpu 2 (reframe, join due); running: upscale 1, cpu 1 (remove_watermark)
  const want = { "so:gpu": 3, "so:cpu": 3, "sj:gpu": 2 };
  const qs = {};
  for (const so of byKind("ScaledObject")) qs[`so:${classOf(find("Deployment", so.spec.scaleTargetRef.name))}`] = so.spec.triggers[0].metadata.query;
  for (const sj of sjs) qs[`sj:${classOf(sj)}`] = sj.spec.triggers[0].metadata.query;
  try {
    const got = runQueries(qs);
    expect(Object.keys(qs).filter((k) => got[k] !== want[k]).map((k) => `${k}: counted ${got[k]}, want ${want[k]}`),
           `the KEDA queries run on PostgreSQL and count runnable (+ running) tasks: ${JSON.stringify(got)}`);
  } catch (e) { fail(`the KEDA queries on PostgreSQL: ${e.message}`); }
}

// -- negative cases: each kind of check catches what it is for
{
  const d = clone(api[0] || deployments[0]);
  d.spec.template.spec.containers[0].ports = [{ name: "http", containerPort: "8420" }];
  delete d.spec.selector;
  const so = clone(byKind("ScaledObject")[0]);
  delete so.spec.triggers[0].type;
  so.spec.scaleTargetRef = {};
  const typo = clone(api[0] || deployments[0]);
  typo.spec.template.spec.containers[0].readinesProbe = typo.spec.template.spec.containers[0].readinessProbe;
  typo.spec.replica = 2;
  const neg = [
    ["a Deployment with a string port and no selector fails validate()", () => { const M = req(MODELS["apps/v1/Deployment"][0]).Deployment; try { new M(d).validate(); return false; } catch { return true; } }],
    ["a ScaledObject trigger without a type fails validate()", () => { const M = req(MODELS["keda.sh/v1alpha1/ScaledObject"][0]).ScaledObject; try { new M(so).validate(); return false; } catch { return true; } }],
    ["misspelt fields (readinesProbe, spec.replica) are unknown fields", () => { const p = validateObject(typo); return p.some((x) => x.includes("readinesProbe")) && p.some((x) => x.includes("spec.replica")); }],
    ["a literal AWS_SECRET_ACCESS_KEY is refused", () => { const w = clone(workers[0]); const e = podSpecOf(w).containers.find((c) => c.name === "kiln").env; e.find((x) => x.name === "AWS_SECRET_ACCESS_KEY").value = "x"; delete e.find((x) => x.name === "AWS_SECRET_ACCESS_KEY").valueFrom; return podProblems(w).some((x) => x.includes("AWS_SECRET_ACCESS_KEY")); }],
    ["a queue URL with its password on the command line is refused", () => { const w = clone(workers[0]); agentOf(w).args.push("--queue", "postgres://kiln:pw@db/kiln"); return podProblems(w).length > 0; }],
    ["a GPU pool without nvidia.com/gpu is refused", () => { const w = clone(workers.find((x) => classOf(x) === "gpu")); delete agentOf(w).resources.limits["nvidia.com/gpu"]; return workerProblems(w).length > 0; }],
    ["probes on another path are refused", () => { const a = clone(api[0]); a.spec.template.spec.containers[0].livenessProbe.httpGet.path = "/"; return apiProblems(a).length > 0; }],
    ["a ScaledObject from 1, or at a missing Deployment, is refused", () => { const s1 = clone(byKind("ScaledObject")[0]); s1.spec.minReplicaCount = 1; const s2 = clone(s1); s2.spec.scaleTargetRef.name = "nope"; return scaledObjectProblems(s1).length > 0 && scaledObjectProblems(s2).length > 0; }],
    ["a query missing a function of its class is refused", () => queryProblems("SELECT COUNT(*) FROM jobs WHERE fn IN ('reframe') AND kind <> 3", "cpu", true).length > 0],
    ["kiln refuses a config.yaml with an unknown key", () => kilnConfigProblems(cm.data["config.yaml"] + "\nlisten_port: 8420\n").length > 0],
  ];
  for (const [what, f] of neg) { let r; try { r = f(); } catch (e) { r = false; } r ? ok(`negative: ${what}`) : fail(`negative: ${what} — the check did not catch it`); }
}

// -- kustomize's own render, when kubectl is here (not a Debian package: optional)
if (spawnSync("kubectl", ["version", "--client"], { stdio: "ignore" }).status === 0) {
  for (const [dir, want, gone] of [["", "ScaledObject/kiln-worker-gpu", "ScaledJob/kiln-worker-gpu-job"],
                                   ["long-jobs", "ScaledJob/kiln-worker-gpu-job", "Deployment/kiln-worker-gpu"]]) {
    const r = spawnSync("kubectl", ["kustomize", path.join(kdir, dir)], { encoding: "utf8" });
    if (r.status !== 0) { fail(`kubectl kustomize deploy/kubernetes/${dir}: ${r.stderr.trim()}`); continue; }
    const out = parseDocs(`kustomize ${dir}`, r.stdout), problems = [];
    const names = new Set(out.map((o) => `${o.kind}/${o.metadata.name}`));
    for (const o of out) problems.push(...validateObject(o).map((p) => `${o.kind} ${o.metadata.name}: ${p}`));
    for (const o of out.filter(podSpecOf))
      for (const c of [...(podSpecOf(o).initContainers || []), ...podSpecOf(o).containers])
        if (!/^[^:]+\/kiln:[\w.-]+$/.test(c.image)) problems.push(`${o.kind} ${o.metadata.name}: image ${c.image} was not set`);
    if (!names.has(want)) problems.push(`no ${want}`);
    if (names.has(gone)) problems.push(`${gone} is still there`);
    expect(problems, `kubectl kustomize deploy/kubernetes/${dir}: ${out.length} objects, valid, images set`);
  }
} else console.log("note kubectl is not installed: kustomize's render was not checked");

// -- systemd units
function unitSections(text) {
  const s = {};
  let cur = null;
  for (const raw of text.split("\n")) {
    const l = raw.trim();
    if (!l || l.startsWith("#") || l.startsWith(";")) continue;
    const h = /^\[(\w+)\]$/.exec(l);
    if (h) { cur = s[h[1]] = s[h[1]] || {}; continue; }
    const kv = /^(\w+)=(.*)$/.exec(l);
    if (!cur || !kv) return { error: `cannot read line "${l}"` };
    (cur[kv[1]] = cur[kv[1]] || []).push(kv[2]);
  }
  return s;
}
function unitProblems(name, text) {
  const s = unitSections(text), out = [];
  if (s.error) return [s.error];
  const v = (k) => (s.Service?.[k] || []).join(" ");
  for (const sec of ["Unit", "Service", "Install"]) if (!s[sec]) out.push(`no [${sec}]`);
  const want = { Restart: "on-failure", NoNewPrivileges: "yes", ProtectSystem: "strict" };
  for (const [k, x] of Object.entries(want)) if (v(k) !== x) out.push(`${k}=${v(k)}, want ${x}`);
  if (!v("User") || v("User") === "root") out.push("no dedicated User=");
  if (!/^\/etc\/kiln\/[\w.-]+$/.test(v("EnvironmentFile"))) out.push("no EnvironmentFile=/etc/kiln/... for the secrets");
  const home = /KILN_HOME=(\S+)/.exec(v("Environment"))?.[1];
  if (!home) out.push("no Environment=KILN_HOME=...");
  else if (!v("ReadWritePaths").split(/\s+/).includes(home)) out.push(`ReadWritePaths does not hold KILN_HOME ${home}`);
  if (/AWS_|KILN_QUEUE|PASSWORD/i.test(v("Environment")) || URL_WITH_PASSWORD.test(text)) out.push("a secret in the unit itself");
  const exec = v("ExecStart");
  if (name === "kiln-serve.service" && !/^\/\S+\/kiln serve --no-workers\b/.test(exec)) out.push(`ExecStart=${exec}`);
  if (name === "kiln-agent.service" && !/^\/\S+\/kiln agent\b/.test(exec)) out.push(`ExecStart=${exec}`);
  if (/--queue|--store|:\/\//.test(exec)) out.push("a URL on the command line (KILN_QUEUE/KILN_STORE from the EnvironmentFile)");
  return out;
}
const units = ["kiln-serve.service", "kiln-agent.service"];
for (const u of units) expect(unitProblems(u, fs.readFileSync(path.join(sdir, u), "utf8")), `deploy/systemd/${u}: sections, user, secrets file, hardening`);
{
  const env = fs.readFileSync(path.join(sdir, "kiln.env.example"), "utf8").split("\n").filter((l) => /^\w+=/.test(l));
  const bad = env.filter((l) => /^(AWS_|KILN_QUEUE)/.test(l) && !l.includes("CHANGE-ME"));
  expect(bad.map((l) => `${l.split("=")[0]} is not a CHANGE-ME placeholder`), "deploy/systemd/kiln.env.example holds placeholders only");
}
if (spawnSync("systemd-analyze", ["--version"], { stdio: "ignore" }).status === 0) {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kiln-units-"));
  try {
    for (const u of units)     // verify checks that ExecStart's binary exists: point it at the build
      fs.writeFileSync(path.join(tmp, u), fs.readFileSync(path.join(sdir, u), "utf8").replaceAll("/usr/local/bin/kiln", path.resolve(kiln)));
    const paths = units.map((u) => path.join(tmp, u));
    const r = spawnSync("systemd-analyze", ["verify", "--man=no", ...paths], { encoding: "utf8" });
    const said = `${r.stdout}${r.stderr}`.split("\n").filter((l) => l.trim());
    expect(r.status === 0 && !said.length ? [] : [said.join(" | ") || `exit ${r.status}`], "systemd-analyze verify: both units, nothing to say");
    for (const p of paths) {
      const s = spawnSync("systemd-analyze", ["security", "--offline=yes", p], { encoding: "utf8" });
      const lvl = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(s.stdout)?.[1]);
      expect(s.status === 0 && lvl <= 5 ? [] : [`exposure ${lvl} (want <= 5, "OK"): ${(s.stderr || "").trim().slice(-200)}`],
             `systemd-analyze security ${path.basename(p)}: exposure ${lvl} of 10`);
    }
  } finally { fs.rmSync(tmp, { recursive: true, force: true }); }
} else console.log("note systemd-analyze is not installed: the units were only parsed");

console.log(failed ? `test_deploy: ${failed} check(s) failed` : "test_deploy: all checks passed");
process.exit(failed ? 1 : 0);
