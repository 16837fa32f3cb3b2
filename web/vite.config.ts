/// <reference types="vitest/config" />
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";
import { fileURLToPath } from "node:url";

// The build lands inside the Python package, so `corral serve` ships it (no Node at run time).
const outDir = fileURLToPath(new URL("../corral/web/app", import.meta.url));

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: { outDir, emptyOutDir: true, assetsDir: "assets", sourcemap: false },
  server: {
    host: "127.0.0.1",
    proxy: { "/api": "http://127.0.0.1:8080", "/public": "http://127.0.0.1:8080", "/v2": "http://127.0.0.1:8080" },
  },
  test: { environment: "jsdom", include: ["src/**/*.test.{ts,tsx}"] },
});
