#!/usr/bin/python3
"""Checks recorded HTTP answers against docs/openapi.yaml (OpenAPI 3.1, JSON Schema 2020-12).

    openapi-check.py OPENAPI.yaml ANSWERS.json

ANSWERS.json is a list of exchanges, each {"method", "path", "status", "headers": {lower-case
name: value}, "body": text or null}. "path" is the document's path template. An answer to a
method the document does not list (405) names the schema it must follow instead:
{"schema": "RouteError", ...}. Prints every violation; exits 1 if there is one, 0 otherwise.
Debian's python3-yaml and python3-jsonschema only (scripts/lib/common.sh installs them).
"""

import json
import sys

import jsonschema
import yaml


def main():
    document_path, answers_path = sys.argv[1], sys.argv[2]
    with open(document_path, encoding="utf-8") as file:
        document = yaml.safe_load(file)
    with open(answers_path, encoding="utf-8") as file:
        answers = json.load(file)
    # Every "#/components/..." reference resolves inside the document itself.
    resolver = jsonschema.RefResolver(base_uri="", referrer=document)
    checker = jsonschema.FormatChecker()
    problems = []

    for name, schema in document.get("components", {}).get("schemas", {}).items():
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as error:
            problems.append(f"components.schemas.{name} is not a valid JSON Schema: {error.message}")

    def validate(value, schema, where):
        validator = jsonschema.Draft202012Validator(schema, resolver=resolver, format_checker=checker)
        for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
            # For oneOf/anyOf, the branch that got deepest into the value says what is wrong.
            while error.context:
                error = max(error.context, key=lambda e: len(e.absolute_path))
            at = "/".join(str(part) for part in error.absolute_path) or "(root)"
            problems.append(f"{where}: at {at}: {error.message[:300]}")

    def resolve(node):
        while isinstance(node, dict) and "$ref" in node:
            node = resolver.resolve(node["$ref"])[1]
        return node

    for answer in answers:
        method, path, status = answer["method"].upper(), answer["path"], answer["status"]
        where = f"{method} {path} -> {status}"
        headers = {name.lower(): value for name, value in answer.get("headers", {}).items()}
        body = answer.get("body")
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()

        if "schema" in answer:
            # An undocumented method: the route's (or nginx's) error shape.
            if content_type != "application/json":
                problems.append(f"{where}: Content-Type {content_type!r}, expected application/json")
                continue
            schema = {"$ref": "#/components/schemas/" + answer["schema"]}
            validate(json.loads(body or "null"), schema, where)
            continue

        operation = document["paths"].get(path, {}).get(method.lower())
        if operation is None:
            problems.append(f"{where}: no such operation in the document")
            continue
        response = operation.get("responses", {}).get(str(status))
        if response is None:
            problems.append(f"{where}: status {status} is not documented for this operation")
            continue
        response = resolve(response)

        for name, header in response.get("headers", {}).items():
            header = resolve(header)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    problems.append(f"{where}: header {name} is missing")
                continue
            if "schema" in header:
                validate(value, header["schema"], f"{where} header {name}")

        content = response.get("content")
        if not content:
            if body:
                problems.append(f"{where}: a body where the document has none ({len(body)} characters)")
            continue
        if content_type not in content:
            problems.append(f"{where}: Content-Type {content_type!r} is not one of {sorted(content)}")
            continue
        if method == "HEAD":
            continue
        try:
            value = json.loads(body or "")
        except ValueError:
            problems.append(f"{where}: the body is not JSON: {(body or '')[:200]!r}")
            continue
        schema = content[content_type].get("schema")
        if schema is not None:
            validate(value, schema, where)

    for problem in problems:
        print(problem)
    print(f"openapi-check: {len(answers)} answers checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
