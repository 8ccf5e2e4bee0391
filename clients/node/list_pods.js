// Lists pods of a raftorch cluster from Node.js, with nothing but the .proto files:
//   node list_pods.js HOST:PORT [NAMESPACE]
// Prints one line per pod: NAMESPACE NAME PHASE NODE
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
const client = new v1.Resources(endpoint, grpc.credentials.createInsecure());
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
