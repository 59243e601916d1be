// tk's service worker: once the page has loaded, the bundle works offline. On install it caches
// every file web.json lists (page, runtimes, models); then it answers those from the cache first.
// The cache is named by the bundle's digest (web.json "cache"): a re-packed bundle gets a new one
// and the old one is deleted. Anything else (tk verify's /tk/ routes) goes to the network.

const version = new URL(self.location.href).searchParams.get("v") || "tk";

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const web = await (await fetch("web.json", { cache: "no-store" })).json();
    const cache = await caches.open(version);
    await cache.addAll(web.offline);
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    for (const name of await caches.keys()) if (name !== version) await caches.delete(name);
    await self.clients.claim();
  })());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin || url.pathname.startsWith("/tk/")) return;
  event.respondWith((async () => {
    const cache = await caches.open(version);
    return (await cache.match(event.request, { ignoreSearch: true })) || fetch(event.request);
  })());
});
