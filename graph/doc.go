// Package graph is a small typed client for the one Microsoft Graph (beta)
// resource cartclass manages: Intune's cartToClassAssociation, served at
// <baseURL>/deviceManagement/cartToClassAssociations.
//
// The client is deliberately thin. Every request goes through one private
// method that attaches the caller's context, a bearer token from an
// oauth2.TokenSource, a fresh GUID client-request-id and Accept:
// application/json, caps and drains response bodies, and turns non-2xx
// answers into *APIError values decoded from Graph's error shape. It never
// logs and never retries: retry, backoff and Retry-After policy belong to
// the caller (the push worker), which can tell from the returned errors
// whether a request may have reached Graph (see OutcomeUnknown) and so
// whether a create must be reconciled by listing before it is re-sent.
//
// A full read is offered page by page (Client.Pages, an iterator that sends
// each request only when the caller asks for the next page, and reports
// malformed objects beside the good ones), so a reconciliation can pace its
// requests, show progress and tell a complete listing from one that failed
// part-way; Client.List collects it for callers that want everything.
//
// Package graph/emulator provides a faithful stand-in for the Graph
// endpoints used here, for dev mode and tests.
package graph
