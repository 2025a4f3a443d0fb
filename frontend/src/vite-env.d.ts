/// <reference types="vite/client" />

interface ImportMetaEnv {
  /** API base URL for the demo page ("" = same origin, the default). */
  readonly VITE_API_BASE_URL?: string;
}
