'use strict';
// primserve Node.js client: loads the protos of proto/primserve/v1 at run time with
// @grpc/proto-loader (no generated code) and wraps every RPC of every primserve.v1 service in a
// promise with a deadline.
//
//   const primserve = require('./client/node');
//   const client = primserve.connect('localhost:50051', {timeoutMs: 30000});
//   const {output} = await client.positionEncoding.sinusoidal({length: 2, dim: 4});
//   const table = primserve.fromTensor(output);   // {shape: [2, 4], data: Float32Array(8)}
//   client.close();
//
// Services appear as lowerCamelCase properties (positionEncoding, attention, toolkit,
// logisticRegression, models, and any other service in the proto directory, e.g.
// discriminator), methods as lowerCamelCase functions (Sinusoidal -> sinusoidal). Requests and
// responses are plain objects with the proto field names (snake_case). int64 fields come back
// as Number, enums as their names ('ROPE_PAIRING_HALF_SPLIT'), unset fields as their defaults.
// Pass int64 values above 2^53 (e.g. a uint64 seed) as decimal strings.
//
// Errors reject with an Error whose `.code` is the numeric gRPC status (compare with
// `primserve.status.INVALID_ARGUMENT`), `.codeName` its name, `.details` the server's message
// and `.metadata` the trailing metadata.

const fs = require('fs');
const os = require('os');
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEFAULT_PROTO_DIR = path.resolve(__dirname, '..', '..', 'proto');
const PACKAGE = 'primserve.v1';
const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;  // The server's default --max_message_bytes.
const DEFAULT_TIMEOUT_MS = 30000;

const LOADER_OPTIONS = Object.freeze({
  keepCase: true,     // Field names as in the .proto files (snake_case).
  longs: Number,      // int64 -> Number (exact below 2^53: shapes, counts, labels).
  enums: String,      // Enum values by name.
  bytes: Buffer,
  defaults: true,     // Unset fields present with their default values.
  oneofs: true,       // A virtual field names the set member of each oneof.
});

const statusNames = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

function lowerCamel(name) {
  return name.charAt(0).toLowerCase() + name.slice(1);
}

// The .proto files of primserve.v1 under `protoDir` (paths relative to it, sorted).
function protoFiles(protoDir) {
  const dir = path.join(protoDir, 'primserve', 'v1');
  let names;
  try {
    names = fs.readdirSync(dir);
  } catch (e) {
    throw new Error(`primserve: cannot read the proto directory ${dir}: ${e.message}`);
  }
  const files = names.filter((n) => n.endsWith('.proto')).sort().map((n) => `primserve/v1/${n}`);
  if (files.length === 0) throw new Error(`primserve: no .proto files in ${dir}`);
  return files;
}

// Loads every primserve.v1 proto and the health and reflection protos of this directory;
// returns {primserve, health, reflection} grpc objects.
function loadDefinitions(protoDir = DEFAULT_PROTO_DIR) {
  const definition = protoLoader.loadSync(protoFiles(protoDir), {...LOADER_OPTIONS, includeDirs: [protoDir]});
  const local = (file) => grpc.loadPackageDefinition(protoLoader.loadSync(path.join(__dirname, file), LOADER_OPTIONS));
  return {
    primserve: grpc.loadPackageDefinition(definition).primserve.v1,
    health: local('health.proto').grpc.health.v1,
    reflection: local('reflection.proto').grpc.reflection.v1alpha,
  };
}

// Turns a grpc-js ServiceError into an Error with .code, .codeName, .details, .metadata.
function toError(err, method) {
  if (err == null || typeof err.code !== 'number') return err;
  const codeName = statusNames[err.code] || `CODE_${err.code}`;
  const details = err.details !== undefined ? err.details : err.message;
  const e = new Error(`${method}: ${codeName}: ${details}`);
  e.code = err.code;
  e.codeName = codeName;
  e.details = details;
  e.metadata = err.metadata;
  return e;
}

// Per-call grpc options and metadata from the connection defaults and the call's own options:
// {timeoutMs, deadline (Date or ms since epoch), metadata (object or grpc.Metadata)}.
function callArgs(defaults, options = {}) {
  const metadata = new grpc.Metadata();
  const add = (m) => {
    if (!m) return;
    if (m instanceof grpc.Metadata) {
      for (const [k, v] of Object.entries(m.getMap())) metadata.set(k, v);
    } else {
      for (const [k, v] of Object.entries(m)) metadata.set(k, String(v));
    }
  };
  add(defaults.metadata);
  add(options.metadata);
  if (defaults.token) metadata.set('authorization', `Bearer ${defaults.token}`);
  let deadline = options.deadline;
  if (deadline === undefined) {
    const timeoutMs = options.timeoutMs !== undefined ? options.timeoutMs : defaults.timeoutMs;
    if (timeoutMs !== undefined && timeoutMs !== null && timeoutMs !== Infinity) {
      deadline = new Date(Date.now() + timeoutMs);
    }
  }
  return {metadata, callOptions: deadline !== undefined ? {deadline} : {}};
}

// A unary method as (request, options) => Promise<response>.
function unaryWrapper(stub, methodName, fullName, defaults) {
  return (request = {}, options = {}) => new Promise((resolve, reject) => {
    const {metadata, callOptions} = callArgs(defaults, options);
    stub[methodName](request, metadata, callOptions, (err, response) => {
      if (err) reject(toError(err, fullName));
      else resolve(response);
    });
  });
}

// A client-streaming method as (requests, options) => Promise<response>, `requests` an iterable
// or async iterable of request objects (written one at a time, honouring back-pressure).
function clientStreamWrapper(stub, methodName, fullName, defaults) {
  return (requests, options = {}) => new Promise((resolve, reject) => {
    const {metadata, callOptions} = callArgs(defaults, options);
    let settled = false;
    const call = stub[methodName](metadata, callOptions, (err, response) => {
      settled = true;
      if (err) reject(toError(err, fullName));
      else resolve(response);
    });
    (async () => {
      for await (const request of requests) {
        if (settled) return;
        if (!call.write(request)) await new Promise((r) => call.once('drain', r));
      }
      call.end();
    })().catch((e) => {
      call.cancel();
      if (!settled) { settled = true; reject(e); }
    });
  });
}

// Promise wrappers for every method of a grpc service client constructor.
// All services share `channel` (one connection pool, one load-balancing state).
function wrapService(ServiceClient, address, credentials, channel, defaults, packageName, serviceName) {
  const stub = new ServiceClient(address, credentials, {channelOverride: channel});
  const wrapped = {_stub: stub};
  for (const [methodName, method] of Object.entries(ServiceClient.service)) {
    const fullName = `${packageName}.${serviceName}/${methodName}`;
    const fn = lowerCamel(methodName);
    if (!method.requestStream && !method.responseStream) {
      wrapped[fn] = unaryWrapper(stub, methodName, fullName, defaults);
    } else if (method.requestStream && !method.responseStream) {
      wrapped[fn] = clientStreamWrapper(stub, methodName, fullName, defaults);
    }
    // No primserve RPC streams responses; such a method would only be reachable via _stub.
  }
  return wrapped;
}

/**
 * Connects to a primserve server.
 * @param {string} address e.g. 'localhost:50051', 'dns:///primserve-headless:50051'.
 * @param {object} [options]
 * @param {number} [options.maxMessageBytes=67108864] largest message sent or received.
 * @param {number} [options.timeoutMs=30000] default deadline of each call (Infinity: none).
 * @param {grpc.ChannelCredentials} [options.credentials] default: plaintext.
 * @param {string} [options.token] bearer token sent as `authorization` metadata.
 * @param {object} [options.metadata] metadata added to every call.
 * @param {string} [options.protoDir] directory holding primserve/v1/*.proto (default: the
 *   PRIMSERVE_PROTO_DIR environment variable, else ../../proto, the repository's proto/).
 * @param {object} [options.channelOptions] extra grpc-js channel options.
 * @returns {object} {positionEncoding, attention, toolkit, logisticRegression, models,
 *   [discriminator], health: {check(service?)}, listServices(), services (the proto's service
 *   names), channel, close()}
 */
function connect(address, options = {}) {
  const maxMessageBytes = options.maxMessageBytes || DEFAULT_MAX_MESSAGE_BYTES;
  const defaults = {
    timeoutMs: options.timeoutMs !== undefined ? options.timeoutMs : DEFAULT_TIMEOUT_MS,
    token: options.token,
    metadata: options.metadata,
  };
  const credentials = options.credentials || grpc.credentials.createInsecure();
  const channelOptions = {
    'grpc.max_send_message_length': maxMessageBytes,
    'grpc.max_receive_message_length': maxMessageBytes,
    ...(options.channelOptions || {}),
  };
  const defs = loadDefinitions(options.protoDir || process.env.PRIMSERVE_PROTO_DIR || DEFAULT_PROTO_DIR);
  const channel = new grpc.Channel(address, credentials, channelOptions);
  const client = {services: [], channel};
  for (const [name, ctor] of Object.entries(defs.primserve)) {
    if (typeof ctor !== 'function' || !ctor.service) continue;  // Messages and enums.
    client[lowerCamel(name)] = wrapService(ctor, address, credentials, channel, defaults, PACKAGE, name);
    client.services.push(name);
  }
  const health = wrapService(defs.health.Health, address, credentials, channel, defaults,
                             'grpc.health.v1', 'Health');
  client.health = {
    _stub: health._stub,
    // Resolves to 'SERVING', 'NOT_SERVING', ... for `service` ('' = the whole server).
    check: async (service = '', callOptions = {}) => (await health.check({service}, callOptions)).status,
  };
  const reflection = new defs.reflection.ServerReflection(address, credentials, {channelOverride: channel});
  // Resolves to the sorted names of the services the server offers (server reflection).
  client.listServices = (callOptions = {}) => new Promise((resolve, reject) => {
    const {metadata, callOptions: grpcOptions} = callArgs(defaults, callOptions);
    const call = reflection.ServerReflectionInfo(metadata, grpcOptions);
    const names = [];
    let error = null;
    call.on('data', (response) => {
      if (response.error_response) {
        error = new Error(`ServerReflectionInfo: ${response.error_response.error_message}`);
        error.code = response.error_response.error_code;
      } else if (response.list_services_response) {
        for (const s of response.list_services_response.service) names.push(s.name);
      }
    });
    call.on('error', (err) => reject(toError(err, 'grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo')));
    call.on('end', () => (error ? reject(error) : resolve(names.sort())));
    call.write({list_services: '*'});
    call.end();
  });
  client.close = () => channel.close();
  return client;
}

function elementCount(shape) {
  return shape.reduce((n, extent) => n * extent, 1);
}

/**
 * A primserve.v1.Tensor (float32, little-endian `data`) from a Float32Array or array of numbers.
 * @param {Float32Array|number[]|ArrayLike<number>} values row-major elements.
 * @param {number[]} [shape] default: [values.length].
 */
function toTensor(values, shape) {
  if (shape === undefined) shape = [values.length];
  shape = Array.from(shape, Number);
  for (const extent of shape) {
    if (!Number.isInteger(extent) || extent < 0) throw new RangeError(`toTensor: bad shape [${shape}]`);
  }
  const count = elementCount(shape);
  if (count !== values.length) {
    throw new RangeError(`toTensor: shape [${shape}] has ${count} elements, got ${values.length} values`);
  }
  const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
  let data;
  if (os.endianness() === 'LE') {
    data = Buffer.from(f32.buffer, f32.byteOffset, f32.byteLength);
  } else {
    data = Buffer.alloc(count * 4);
    for (let i = 0; i < count; ++i) data.writeFloatLE(f32[i], i * 4);
  }
  return {shape, dtype: 'DATA_TYPE_FLOAT32', data};
}

/**
 * {shape: number[], data: Float32Array} from a primserve.v1.Tensor message (from `data` in
 * FLOAT32 or BFLOAT16, or from `values`).
 */
function fromTensor(msg) {
  if (msg == null) throw new TypeError('fromTensor: no tensor (the field is unset)');
  const shape = Array.from(msg.shape || [], Number);
  const count = elementCount(shape);
  const bytes = msg.data || Buffer.alloc(0);
  const dtype = msg.dtype || 'DATA_TYPE_FLOAT32';
  const out = new Float32Array(count);
  if (bytes.length === 0 && msg.values && msg.values.length > 0) {
    if (msg.values.length !== count) {
      throw new RangeError(`fromTensor: shape [${shape}] has ${count} elements, got ${msg.values.length} values`);
    }
    out.set(msg.values);
    return {shape, data: out};
  }
  const width = dtype === 'DATA_TYPE_BFLOAT16' || dtype === 2 ? 2 : 4;
  if (bytes.length !== count * width) {
    throw new RangeError(`fromTensor: shape [${shape}] needs ${count * width} bytes of ${dtype}, got ${bytes.length}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (width === 2) {
    const u32 = new Uint32Array(out.buffer);
    for (let i = 0; i < count; ++i) u32[i] = view.getUint16(i * 2, true) << 16;
  } else if (os.endianness() === 'LE') {
    new Uint8Array(out.buffer).set(bytes);  // Copies: `bytes` may be unaligned.
  } else {
    for (let i = 0; i < count; ++i) out[i] = view.getFloat32(i * 4, true);
  }
  return {shape, data: out};
}

module.exports = {
  connect,
  toTensor,
  fromTensor,
  loadDefinitions,
  status: grpc.status,
  grpc,
  DEFAULT_PROTO_DIR,
};
