// Swagger UI over this gateway's /openapi.json (started here: the CSP allows no inline script).
// validatorUrl: null keeps it from asking a validator on another host; the API key the
// playground keeps for this tab (sessionStorage) is put in Swagger UI's Authorize dialog.
(() => {
  "use strict";
  const KEY_STORAGE = "llava-playground.api-key";
  const ui = SwaggerUIBundle({
    url: "openapi.json",
    dom_id: "#swagger-ui",
    validatorUrl: null,
    deepLinking: true,
    docExpansion: "list",
    defaultModelsExpandDepth: 0,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    onComplete: () => {
      const key = sessionStorage.getItem(KEY_STORAGE);
      if (key) ui.preauthorizeApiKey("apiKey", key);
    },
  });
})();
