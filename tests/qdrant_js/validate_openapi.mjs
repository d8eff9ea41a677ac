// Validates an OpenAPI document with a third-party validator (schema of
// OpenAPI 3.0, every $ref resolved): node validate_openapi.mjs FILE
import SwaggerParser from "@apidevtools/swagger-parser";

try {
  const api = await SwaggerParser.validate(process.argv[2]);
  console.log(`valid: ${api.info.title} ${api.info.version}, ${Object.keys(api.paths).length} paths`);
} catch (e) {
  const lines = String(e.message || e).split("\n");
  console.error(lines.slice(0, 20).join("\n") + (lines.length > 20 ? `\n... ${lines.length - 20} more` : ""));
  process.exit(1);
}
