// A small viewer for binary glTF (GLB) files on a WebGL2 canvas, for the dashboard's
// previews of 3D outputs: triangle meshes with their node transforms and base colours,
// lit by two lights, turning slowly; drag to turn it, wheel to zoom. No textures,
// skins or animations: a preview, not an editor.

const GLB_MAGIC = 0x46546c67; // "glTF"
const CHUNK_JSON = 0x4e4f534a;
const CHUNK_BIN = 0x004e4942;
const COMPONENTS = { SCALAR: 1, VEC2: 2, VEC3: 3, VEC4: 4, MAT4: 16 };
const ARRAYS = { 5120: Int8Array, 5121: Uint8Array, 5122: Int16Array, 5123: Uint16Array, 5125: Uint32Array, 5126: Float32Array };
const TRIANGLES = 4;

export async function mountGlbViewer(canvas, url) {
  const response = await fetch(url, { cache: "force-cache" });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  const meshes = parseGlb(await response.arrayBuffer());
  if (!meshes.length) throw new Error("no triangles in the file");
  const gl = canvas.getContext("webgl2", { antialias: true, preserveDrawingBuffer: true });
  if (!gl) throw new Error("WebGL 2 is not available");
  startRendering(canvas, gl, meshes);
}

// -- reading the file -------------------------------------------------------------------------

export function parseGlb(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 20 || view.getUint32(0, true) !== GLB_MAGIC) throw new Error("not a GLB file");
  if (view.getUint32(4, true) !== 2) throw new Error("only glTF 2.0 is supported");
  let gltf = null;
  let binary = null;
  for (let offset = 12; offset + 8 <= buffer.byteLength; ) {
    const length = view.getUint32(offset, true);
    const type = view.getUint32(offset + 4, true);
    const start = offset + 8;
    if (type === CHUNK_JSON) gltf = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, start, length)));
    if (type === CHUNK_BIN) binary = buffer.slice(start, start + length);
    offset = start + length + ((4 - (length % 4)) % 4);
  }
  if (!gltf) throw new Error("the GLB file has no JSON chunk");
  const read = (index) => readAccessor(gltf, binary, index);
  const meshes = [];
  const visit = (nodeIndex, parent) => {
    const node = gltf.nodes[nodeIndex];
    const matrix = multiply(parent, nodeMatrix(node));
    if (node.mesh !== undefined) {
      for (const primitive of gltf.meshes[node.mesh].primitives) {
        const mesh = readPrimitive(gltf, primitive, read, matrix);
        if (mesh) meshes.push(mesh);
      }
    }
    for (const child of node.children || []) visit(child, matrix);
  };
  const scene = gltf.scenes && gltf.scenes[gltf.scene ?? 0];
  if (scene) {
    for (const root of scene.nodes || []) visit(root, identity());
  } else {
    for (const mesh of gltf.meshes || []) {
      for (const primitive of mesh.primitives) {
        const part = readPrimitive(gltf, primitive, read, identity());
        if (part) meshes.push(part);
      }
    }
  }
  return meshes;
}

function readAccessor(gltf, binary, index) {
  const accessor = gltf.accessors[index];
  const size = COMPONENTS[accessor.type];
  const ArrayType = ARRAYS[accessor.componentType];
  const out = new ArrayType(accessor.count * size);
  if (accessor.bufferView === undefined) return out; // all zeros, per the spec
  if (!binary) throw new Error("the GLB file has no binary chunk");
  const bufferView = gltf.bufferViews[accessor.bufferView];
  const offset = (bufferView.byteOffset || 0) + (accessor.byteOffset || 0);
  const elementBytes = size * ArrayType.BYTES_PER_ELEMENT;
  const stride = bufferView.byteStride || elementBytes;
  if (stride === elementBytes) {
    // Packed: one copy (slice also aligns the data for the typed array).
    return new ArrayType(binary.slice(offset, offset + accessor.count * elementBytes));
  }
  for (let i = 0; i < accessor.count; i += 1) {
    const start = offset + i * stride;
    out.set(new ArrayType(binary.slice(start, start + elementBytes)), i * size);
  }
  return out;
}

function readPrimitive(gltf, primitive, read, matrix) {
  if ((primitive.mode ?? TRIANGLES) !== TRIANGLES || primitive.attributes.POSITION === undefined) return null;
  const local = read(primitive.attributes.POSITION);
  const count = local.length / 3;
  const indices = primitive.indices !== undefined ? Uint32Array.from(read(primitive.indices)) : Uint32Array.from({ length: count }, (_, i) => i);
  const positions = new Float32Array(local.length);
  for (let i = 0; i < count; i += 1) {
    const [x, y, z] = transformPoint(matrix, local[i * 3], local[i * 3 + 1], local[i * 3 + 2]);
    positions.set([x, y, z], i * 3);
  }
  const normals = primitive.attributes.NORMAL !== undefined
    ? transformNormals(matrix, read(primitive.attributes.NORMAL))
    : vertexNormals(positions, indices);
  const material = primitive.material !== undefined ? gltf.materials[primitive.material] : {};
  const pbr = material.pbrMetallicRoughness || {};
  const color = pbr.baseColorFactor || [0.8, 0.8, 0.82, 1];
  return { positions, normals, indices, color, metallic: pbr.metallicFactor ?? 1, roughness: pbr.roughnessFactor ?? 1 };
}

// -- 4×4 matrices, column-major as glTF writes them ------------------------------------------

function identity() {
  return [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1];
}

function multiply(a, b) {
  const out = new Array(16).fill(0);
  for (let column = 0; column < 4; column += 1) {
    for (let row = 0; row < 4; row += 1) {
      for (let k = 0; k < 4; k += 1) out[column * 4 + row] += a[k * 4 + row] * b[column * 4 + k];
    }
  }
  return out;
}

function nodeMatrix(node) {
  if (node.matrix) return node.matrix;
  const [tx, ty, tz] = node.translation || [0, 0, 0];
  const [qx, qy, qz, qw] = node.rotation || [0, 0, 0, 1];
  const [sx, sy, sz] = node.scale || [1, 1, 1];
  return [
    (1 - 2 * (qy * qy + qz * qz)) * sx, 2 * (qx * qy + qz * qw) * sx, 2 * (qx * qz - qy * qw) * sx, 0,
    2 * (qx * qy - qz * qw) * sy, (1 - 2 * (qx * qx + qz * qz)) * sy, 2 * (qy * qz + qx * qw) * sy, 0,
    2 * (qx * qz + qy * qw) * sz, 2 * (qy * qz - qx * qw) * sz, (1 - 2 * (qx * qx + qy * qy)) * sz, 0,
    tx, ty, tz, 1,
  ];
}

function transformPoint(m, x, y, z) {
  return [m[0] * x + m[4] * y + m[8] * z + m[12], m[1] * x + m[5] * y + m[9] * z + m[13], m[2] * x + m[6] * y + m[10] * z + m[14]];
}

function transformNormals(m, normals) {
  // The rotation part is enough for the uniform scales real files use.
  const out = new Float32Array(normals.length);
  for (let i = 0; i < normals.length; i += 3) {
    const x = m[0] * normals[i] + m[4] * normals[i + 1] + m[8] * normals[i + 2];
    const y = m[1] * normals[i] + m[5] * normals[i + 1] + m[9] * normals[i + 2];
    const z = m[2] * normals[i] + m[6] * normals[i + 1] + m[10] * normals[i + 2];
    const length = Math.hypot(x, y, z) || 1;
    out.set([x / length, y / length, z / length], i);
  }
  return out;
}

function vertexNormals(positions, indices) {
  const normals = new Float32Array(positions.length);
  for (let i = 0; i < indices.length; i += 3) {
    const [a, b, c] = [indices[i] * 3, indices[i + 1] * 3, indices[i + 2] * 3];
    const u = [positions[b] - positions[a], positions[b + 1] - positions[a + 1], positions[b + 2] - positions[a + 2]];
    const v = [positions[c] - positions[a], positions[c + 1] - positions[a + 1], positions[c + 2] - positions[a + 2]];
    const n = [u[1] * v[2] - u[2] * v[1], u[2] * v[0] - u[0] * v[2], u[0] * v[1] - u[1] * v[0]];
    for (const vertex of [a, b, c]) for (let k = 0; k < 3; k += 1) normals[vertex + k] += n[k];
  }
  for (let i = 0; i < normals.length; i += 3) {
    const length = Math.hypot(normals[i], normals[i + 1], normals[i + 2]) || 1;
    for (let k = 0; k < 3; k += 1) normals[i + k] /= length;
  }
  return normals;
}

function perspective(fovY, aspect, near, far) {
  const f = 1 / Math.tan(fovY / 2);
  return [f / aspect, 0, 0, 0, 0, f, 0, 0, 0, 0, (far + near) / (near - far), -1, 0, 0, (2 * far * near) / (near - far), 0];
}

function orbitView(yaw, pitch, distance, target) {
  const eye = [
    target[0] + distance * Math.cos(pitch) * Math.sin(yaw),
    target[1] + distance * Math.sin(pitch),
    target[2] + distance * Math.cos(pitch) * Math.cos(yaw),
  ];
  const f = normalize([target[0] - eye[0], target[1] - eye[1], target[2] - eye[2]]);
  const s = normalize(cross(f, [0, 1, 0]));
  const u = cross(s, f);
  return {
    eye,
    view: [s[0], u[0], -f[0], 0, s[1], u[1], -f[1], 0, s[2], u[2], -f[2], 0, -dot(s, eye), -dot(u, eye), dot(f, eye), 1],
  };
}

const cross = (a, b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
function normalize(v) {
  const length = Math.hypot(v[0], v[1], v[2]) || 1;
  return [v[0] / length, v[1] / length, v[2] / length];
}

// -- drawing ------------------------------------------------------------------------------------

const VERTEX_SHADER = `#version 300 es
in vec3 position;
in vec3 normal;
uniform mat4 projection;
uniform mat4 view;
out vec3 worldNormal;
out vec3 worldPosition;
void main() {
  worldNormal = normal;
  worldPosition = position;
  gl_Position = projection * view * vec4(position, 1.0);
}`;

const FRAGMENT_SHADER = `#version 300 es
precision highp float;
in vec3 worldNormal;
in vec3 worldPosition;
uniform vec4 baseColor;
uniform float metallic;
uniform float roughness;
uniform vec3 eye;
out vec4 color;
void main() {
  vec3 n = normalize(worldNormal);
  vec3 toEye = normalize(eye - worldPosition);
  if (dot(n, toEye) < 0.0) n = -n; // both sides of open surfaces
  vec3 key = normalize(vec3(0.6, 1.0, 0.8));
  vec3 fill = normalize(vec3(-0.8, 0.3, -0.5));
  float diffuse = max(dot(n, key), 0.0) * 0.75 + max(dot(n, fill), 0.0) * 0.3 + 0.22;
  float shininess = mix(64.0, 4.0, roughness);
  float specular = pow(max(dot(n, normalize(key + toEye)), 0.0), shininess) * (1.0 - roughness * 0.8);
  vec3 tint = mix(vec3(1.0), baseColor.rgb, metallic);
  vec3 lit = baseColor.rgb * diffuse * (1.0 - metallic * 0.5) + tint * specular * 0.5;
  color = vec4(pow(lit, vec3(1.0 / 2.2)), 1.0);
}`;

function compile(gl, type, source) {
  const shader = gl.createShader(type);
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
  return shader;
}

function startRendering(canvas, gl, meshes) {
  const program = gl.createProgram();
  gl.attachShader(program, compile(gl, gl.VERTEX_SHADER, VERTEX_SHADER));
  gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, FRAGMENT_SHADER));
  gl.linkProgram(program);
  if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
  const at = (name) => gl.getUniformLocation(program, name);

  const low = [Infinity, Infinity, Infinity];
  const high = [-Infinity, -Infinity, -Infinity];
  let triangles = 0;
  const parts = meshes.map((mesh) => {
    for (let i = 0; i < mesh.positions.length; i += 3) {
      for (let k = 0; k < 3; k += 1) {
        low[k] = Math.min(low[k], mesh.positions[i + k]);
        high[k] = Math.max(high[k], mesh.positions[i + k]);
      }
    }
    triangles += mesh.indices.length / 3;
    const vao = gl.createVertexArray();
    gl.bindVertexArray(vao);
    for (const [name, data] of [["position", mesh.positions], ["normal", mesh.normals]]) {
      const buffer = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, buffer);
      gl.bufferData(gl.ARRAY_BUFFER, data, gl.STATIC_DRAW);
      const location = gl.getAttribLocation(program, name);
      gl.enableVertexAttribArray(location);
      gl.vertexAttribPointer(location, 3, gl.FLOAT, false, 0, 0);
    }
    const elements = gl.createBuffer();
    gl.bindBuffer(gl.ELEMENT_ARRAY_BUFFER, elements);
    gl.bufferData(gl.ELEMENT_ARRAY_BUFFER, mesh.indices, gl.STATIC_DRAW);
    gl.bindVertexArray(null);
    return { vao, count: mesh.indices.length, mesh };
  });
  const center = [0, 1, 2].map((k) => (low[k] + high[k]) / 2);
  const radius = Math.max(Math.hypot(high[0] - low[0], high[1] - low[1], high[2] - low[2]) / 2, 1e-6);
  const camera = { yaw: 0.6, pitch: 0.35, distance: radius * 2.6, dragging: null, turning: true };

  canvas.addEventListener("pointerdown", (event) => {
    camera.dragging = { x: event.clientX, y: event.clientY };
    camera.turning = false;
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!camera.dragging) return;
    camera.yaw -= (event.clientX - camera.dragging.x) * 0.01;
    camera.pitch = Math.max(-1.4, Math.min(1.4, camera.pitch + (event.clientY - camera.dragging.y) * 0.01));
    camera.dragging = { x: event.clientX, y: event.clientY };
  });
  canvas.addEventListener("pointerup", () => {
    camera.dragging = null;
  });
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    camera.distance = Math.max(radius * 1.2, Math.min(radius * 10, camera.distance * Math.exp(event.deltaY * 0.001)));
  }, { passive: false });

  canvas.dataset.triangles = String(triangles);
  let last = performance.now();
  const frame = (now) => {
    if (!canvas.isConnected) return; // the page moved on: stop drawing
    if (camera.turning) camera.yaw += (now - last) * 0.0004;
    last = now;
    gl.viewport(0, 0, canvas.width, canvas.height);
    gl.clearColor(0, 0, 0, 0);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    gl.enable(gl.DEPTH_TEST);
    gl.useProgram(program);
    const { eye, view } = orbitView(camera.yaw, camera.pitch, camera.distance, center);
    gl.uniformMatrix4fv(at("projection"), false, perspective(0.7, canvas.width / canvas.height, radius * 0.05, radius * 20));
    gl.uniformMatrix4fv(at("view"), false, view);
    gl.uniform3fv(at("eye"), eye);
    for (const part of parts) {
      gl.uniform4fv(at("baseColor"), part.mesh.color);
      gl.uniform1f(at("metallic"), part.mesh.metallic);
      gl.uniform1f(at("roughness"), part.mesh.roughness);
      gl.bindVertexArray(part.vao);
      gl.drawElements(gl.TRIANGLES, part.count, gl.UNSIGNED_INT, 0);
    }
    gl.bindVertexArray(null);
    canvas.dataset.ready = "true";
    requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
}
