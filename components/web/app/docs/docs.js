// Renders openapi.yaml with Swagger UI (vendored from npm by build.mjs, no CDN). "Try it out"
// calls this same origin: the document's server is the relative URL "/".
window.addEventListener("DOMContentLoaded", () => {
  window.ui = SwaggerUIBundle({
    url: "/docs/openapi.yaml",
    dom_id: "#reference",
    deepLinking: true,
    tryItOutEnabled: false,
    persistAuthorization: false,
    validatorUrl: null,
  });
});
