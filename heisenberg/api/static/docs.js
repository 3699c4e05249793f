// The interactive API page: Swagger UI (from the swagger-ui-bundle package, served by the
// daemon itself: nothing is fetched from outside the machine) on /api/v1/openapi.json.
// With ?token=... in the address, every request it makes carries it as a bearer token.
"use strict";
const token = new URLSearchParams(location.search).get("token") || "";
window.ui = SwaggerUIBundle({
  url: "/api/v1/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  requestInterceptor: (request) => {
    if (token) request.headers.Authorization = "Bearer " + token;
    return request;
  },
});
