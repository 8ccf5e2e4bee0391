// Lists pods of a raftorch cluster from Node.js, with nothing but the .proto files:
//   RAFTORCH_CA=ca.crt RAFTORCH_TOKEN=ID.SECRET node list_pods.js HOST:PORT [NAMESPACE]
// Masters speak TLS only: RAFTORCH_CA is the cluster CA (the client config's ca-file), and
// RAFTORCH_TOKEN a bearer token (`raftctl token create NAME --role view`).
// Prints one line per pod: NAMESPACE NAME PHASE NODE
const fs = require("fs");
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const protoRoot = path.join(__dirname, "..", "..", "protos");
const definition = protoLoader.loadSync("raftorch/v1/resources.proto", {
  includeDirs: [protoRoot],
  keepCase: true,
  longs: String,
  defaults: true,
  oneofs: true,
});
const v1 = grpc.loadPackageDefinition(definition).raftorch.v1;

const [endpoint, namespace = ""] = process.argv.slice(2);
if (!endpoint) {
  console.error("usage: node list_pods.js HOST:PORT [NAMESPACE]");
  process.exit(2);
}
const caFile = process.env.RAFTORCH_CA;
const token = process.env.RAFTORCH_TOKEN;
if (!caFile || !token) {
  console.error("error: set RAFTORCH_CA (the cluster CA file) and RAFTORCH_TOKEN (a bearer token)");
  process.exit(2);
}
const tls = grpc.credentials.createSsl(fs.readFileSync(caFile));
const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
  const metadata = new grpc.Metadata();
  metadata.add("authorization", `Bearer ${token}`);
  callback(null, metadata);
});
const client = new v1.Resources(endpoint, grpc.credentials.combineChannelCredentials(tls, bearer));
client.List({ kind: "pods", namespace }, { deadline: Date.now() + 10000 }, (err, resp) => {
  if (err) {
    console.error(`error: ${err.details || err.message}`);
    process.exit(1);
  }
  for (const item of resp.items) {
    const pod = item.pod;
    const phase = (pod.status && pod.status.phase) || "Pending";
    console.log([pod.metadata.namespace, pod.metadata.name, phase, pod.spec.node_name || "<none>"].join(" "));
  }
  process.exit(0);
});
