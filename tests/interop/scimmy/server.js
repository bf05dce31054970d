// A SCIM 2.0 user directory for agentsync's interop suite: scimmy's User
// resource over an in-memory store, served by scimmy-routers under /scim/v2.
//
//   node server.js [--port 0] [--no-patch]
//
// Listens on 127.0.0.1 only and prints "listening on http://127.0.0.1:PORT/scim/v2"
// once ready. scimmy parses the requests, applies filters, PATCH operations and
// the startIndex/count window; this file owns the store, the versions
// (meta.version, checked against If-Match, since scimmy leaves preconditions to
// the application) and the switch that announces and enforces "no PATCH".
//
// One test hook, POST /test/interfere {"id", "externalId"}: the next write to
// that user first sets its externalId to the given value, as another client
// would between agentsync's read and its write.

import express from "express";
import SCIMMY from "scimmy";
import SCIMMYRouters from "scimmy-routers";

const args = process.argv.slice(2);
const portArg = args.indexOf("--port");
const port = portArg >= 0 ? Number(args[portArg + 1]) : 0;
const patchSupported = !args.includes("--no-patch");

const users = new Map(); // id -> the stored resource (plain JSON)
const interfere = new Map(); // id -> externalId to set before the next write
let nextId = 1;
let clock = 0;

const plain = (instance) => JSON.parse(JSON.stringify(instance));
const etagOf = (user) => user.meta.version;

function stamp(user, created) {
    const now = new Date().toISOString();
    clock += 1;
    user.meta = {
        resourceType: "User",
        created: created ?? now,
        lastModified: now,
        version: `W/"${clock}"`,
    };
    return user;
}

function conflictOnUserName(userName, exceptId) {
    const wanted = String(userName).toLowerCase();
    for (const [id, u] of users) {
        if (id !== exceptId && String(u.userName).toLowerCase() === wanted) {
            throw new SCIMMY.Types.Error(409, "uniqueness", `userName ${userName} is already taken`);
        }
    }
}

SCIMMY.Resources.declare(SCIMMY.Resources.User)
    .ingress((resource, instance) => {
        const body = plain(instance);
        delete body.meta;
        if (resource.id) {
            const current = users.get(resource.id);
            if (!current) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
            conflictOnUserName(body.userName, resource.id);
            const replaced = stamp({...body, id: resource.id}, current.meta.created);
            users.set(resource.id, replaced);
            return replaced;
        }
        conflictOnUserName(body.userName);
        const id = String(nextId++);
        const created = stamp({...body, id});
        users.set(id, created);
        return created;
    })
    .egress((resource) => {
        const all = [...users.values()];
        const found = resource.filter ? resource.filter.match(all) : all;
        if (resource.id && found.length === 0) {
            throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
        }
        return found;
    })
    .degress((resource) => {
        if (!users.delete(resource.id)) {
            throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
        }
    });

const app = express();
app.disable("x-powered-by");

app.post("/test/interfere", express.json({type: ["application/json", "application/scim+json"]}), (req, res) => {
    const {id, externalId} = req.body ?? {};
    if (!users.has(id)) return res.status(404).json({detail: `no user ${id}`});
    interfere.set(id, externalId);
    res.status(204).end();
});

function scimError(res, status, scimType, detail) {
    res.status(status).type("application/scim+json").send(
        new SCIMMY.Messages.Error({status, scimType, detail}),
    );
}

// Preconditions and the PATCH switch, before scimmy sees the request.
app.use("/scim/v2/Users/:id", (req, res, next) => {
    if (!["PUT", "PATCH", "DELETE"].includes(req.method)) return next();
    if (req.method === "PATCH" && !patchSupported) {
        return scimError(res, 501, undefined, "PATCH is not supported by this service provider");
    }
    const user = users.get(req.params.id);
    if (user && interfere.has(req.params.id)) {
        const value = interfere.get(req.params.id);
        interfere.delete(req.params.id);
        users.set(req.params.id, stamp({...user, externalId: value}, user.meta.created));
    }
    const ifMatch = req.header("If-Match");
    if (user && ifMatch !== undefined) {
        const current = etagOf(users.get(req.params.id));
        const accepted = ifMatch.split(",").map((t) => t.trim());
        if (!accepted.includes("*") && !accepted.includes(current)) {
            return scimError(res, 412, undefined, `version mismatch: the resource is at ${current}`);
        }
    }
    next();
});

// The current version as the ETag of a single user (RFC 7644 §3.14).
app.use("/scim/v2/Users/:id", (req, res, next) => {
    const user = users.get(req.params.id);
    if (user && req.method === "GET") res.setHeader("ETag", etagOf(user));
    next();
});

app.use("/scim/v2", new SCIMMYRouters({
    type: "bearer",
    // Any client may call: the server exists only for the length of a test.
    handler: () => "interop",
}));

SCIMMY.Config.set({patch: patchSupported, etag: true, sort: true, filter: true});

const server = app.listen(port, "127.0.0.1", () => {
    const {port: bound} = server.address();
    console.log(`listening on http://127.0.0.1:${bound}/scim/v2`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
    process.on(signal, () => process.exit(0));
}
