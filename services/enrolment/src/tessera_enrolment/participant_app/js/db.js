// The device's own storage: IndexedDB, never a cookie. "kv" holds the enrolment
// (participant ID, device token), the language and an erasure's status secret;
// "outbox" holds answers waiting for a connection, each with its Idempotency-Key;
// "loaded" holds the last dialogue list and each dialogue as fetched, by route, so they
// open without a connection (the token never goes into the Cache API or a cookie).

const NAME = "tessera";
let opening = null;

function database() {
  opening ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(NAME, 2);
    request.onupgradeneeded = (event) => {
      const db = request.result;
      if (event.oldVersion < 1) {
        db.createObjectStore("kv");
        db.createObjectStore("outbox", { keyPath: "seq", autoIncrement: true });
      }
      if (event.oldVersion < 2) db.createObjectStore("loaded");
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

export const keep = (path, data) => run("loaded", "readwrite", (s) => s.put({ data, loaded_at: new Date().toISOString() }, path));
export const kept = (path) => run("loaded", "readonly", (s) => s.get(path));
export const clearLoaded = () => run("loaded", "readwrite", (s) => s.clear());
