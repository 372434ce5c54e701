// The app shell, cached so the app opens without a connection; answers made offline
// wait in IndexedDB (js/outbox.js), not here. Only the app's own files are cached:
// no participant route (/v1/…) ever passes through this cache.
"use strict";

const CACHE = "tessera-app-2";
const SHELL = [
  "./", "app.css", "manifest.webmanifest", "icons/icon.svg", "icons/icon-192.png",
  "js/main.js", "js/api.js", "js/db.js", "js/dom.js", "js/i18n.js", "js/state.js", "js/outbox.js",
  "js/questions.js", "js/screening.js", "js/dialogues.js", "js/answers.js", "js/rights.js", "js/receipt.js",
];

self.addEventListener("install", (event) => {
  event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (event) => {
  event.waitUntil(caches.keys()
    .then((names) => Promise.all(names.filter((name) => name !== CACHE).map((name) => caches.delete(name))))
    .then(() => self.clients.claim()));
});

// Network first, so a new release shows at once; the cached copy when offline.
self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin || !url.pathname.startsWith("/app/")) return;
  const navigation = event.request.mode === "navigate";
  event.respondWith(fetch(event.request).then((response) => {
    if (response.ok && !navigation) {
      const copy = response.clone();
      caches.open(CACHE).then((cache) => cache.put(event.request, copy));
    }
    return response;
  }).catch(() => caches.match(navigation ? "./" : event.request, { ignoreSearch: navigation })
    .then((cached) => cached ?? Response.error())));
});
