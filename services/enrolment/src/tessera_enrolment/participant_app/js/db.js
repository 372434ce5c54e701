// The device's own storage: IndexedDB, never a cookie. "kv" holds the enrolment
// (participant ID, device token), the language and an erasure's status secret;
// "outbox" holds answers waiting for a connection, each with its Idempotency-Key.

const NAME = "tessera";
let opening = null;

function database() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(NAME, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore("kv");
      db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opening;
}

async function run(store, mode, work) {
  const db = await database();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const request = work(tx.objectStore(store));
    tx.oncomplete = () => resolve(request?.result);
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
}

export const get = (key) => run("kv", "readonly", (s) => s.get(key));
export const set = (key, value) => run("kv", "readwrite", (s) => s.put(value, key));
export const remove = (key) => run("kv", "readwrite", (s) => s.delete(key));

export const waiting = () => run("outbox", "readonly", (s) => s.getAll());
export const enqueue = (item) => run("outbox", "readwrite", (s) => s.add(item));
export const dequeue = (seq) => run("outbox", "readwrite", (s) => s.delete(seq));
export const clearOutbox = () => run("outbox", "readwrite", (s) => s.clear());
