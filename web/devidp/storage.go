package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

const (
	authRequestLifetime = 10 * time.Minute
	codeLifetime        = 5 * time.Minute
)

var (
	_ op.Storage                   = (*storage)(nil)
	_ op.CanSetUserinfoFromRequest = (*storage)(nil)
	_ op.AuthRequest               = (*authRequest)(nil)
	_ op.RefreshTokenRequest       = (*refreshTokenRequest)(nil)
	_ op.Client                    = (*client)(nil)
)

// errNotSupported answers the grants and lookups this provider leaves out
// (JWT profile, client credentials, token exchange).
var errNotSupported = errors.New("not supported by the dev identity provider")

// storage is the in-memory op.Storage: clients and users from the Config,
// and the auth requests, codes and tokens of the flows in progress.
// Errors never contain token values: the library logs them.
type storage struct {
	now        func() time.Time
	tenantID   string
	idTTL      time.Duration
	accessTTL  time.Duration
	refreshTTL time.Duration
	key        *rsa.PrivateKey
	kid        string
	clients    map[string]*client

	usersMu sync.RWMutex
	users   map[string]*User // entries are replaced, never changed in place

	mu            sync.Mutex
	authRequests  map[string]*authRequest
	codes         map[string]string // code → auth request id
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken // keyed by the token value itself
}

func newStorage(cfg Config, key *rsa.PrivateKey, kid string, loginURL func(string) string) *storage {
	s := &storage{
		now:           cfg.Now,
		tenantID:      cfg.TenantID,
		idTTL:         cfg.IDTokenLifetime,
		accessTTL:     cfg.AccessTokenLifetime,
		refreshTTL:    cfg.RefreshTokenLifetime,
		key:           key,
		kid:           kid,
		clients:       map[string]*client{},
		users:         map[string]*User{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]string{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
	}
	for _, c := range cfg.Clients {
		s.clients[c.ID] = &client{
			id:             c.ID,
			secret:         c.Secret,
			redirectURIs:   slices.Clone(c.RedirectURIs),
			postLogoutURIs: slices.Clone(c.PostLogoutRedirectURIs),
			loginURL:       loginURL,
			idTokenTTL:     cfg.IDTokenLifetime,
		}
	}
	for _, u := range cfg.Users {
		u.Roles = slices.Clone(u.Roles)
		u.Groups = slices.Clone(u.Groups)
		s.users[u.Subject] = &u
	}
	return s
}

func (s *storage) user(subject string) *User {
	s.usersMu.RLock()
	defer s.usersMu.RUnlock()
	return s.users[subject]
}

// setRoles replaces a user's roles and groups; tokens issued from now on carry them.
func (s *storage) setRoles(subject string, roles, groups []string) error {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	u, ok := s.users[subject]
	if !ok {
		return fmt.Errorf("devidp: no user with subject %q", subject)
	}
	next := *u
	next.Roles, next.Groups = slices.Clone(roles), slices.Clone(groups)
	s.users[subject] = &next
	return nil
}

// revokeRefreshTokens makes every refresh token of subject invalid, as an admin at the
// provider revoking the user's sessions would.
func (s *storage) revokeRefreshTokens(subject string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.refreshTokens {
		if t.subject == subject {
			delete(s.refreshTokens, k)
		}
	}
}

// --- auth requests and codes

type authRequest struct {
	id           string
	created      time.Time
	clientID     string
	redirectURI  string
	state        string
	nonce        string
	scopes       []string
	responseType oidc.ResponseType
	responseMode oidc.ResponseMode
	challenge    *oidc.CodeChallenge

	subject  string
	authTime time.Time
	done     bool
	codeTime time.Time
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return nil }
func (a *authRequest) GetAudience() []string                 { return []string{a.clientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.clientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.nonce }
func (a *authRequest) GetRedirectURI() string                { return a.redirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.responseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.responseMode }
func (a *authRequest) GetScopes() []string                   { return a.scopes }
func (a *authRequest) GetState() string                      { return a.state }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }

// snapshot copies a so the library never reads a request the login handler
// is changing.
func (a *authRequest) snapshot() *authRequest {
	c := *a
	c.scopes = slices.Clone(a.scopes)
	return &c
}

func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, _ string) (op.AuthRequest, error) {
	// cartclass promises PKCE with S256 on every login; refuse anything less
	// so a regression shows up here instead of only against Entra.
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method=S256 is required")
	}
	// There is no IdP session to reuse, so prompt=none can never succeed.
	if slices.Contains(req.Prompt, oidc.PromptNone) {
		return nil, oidc.ErrLoginRequired()
	}
	now := s.now()
	a := &authRequest{
		id:           rand.Text(),
		created:      now,
		clientID:     req.ClientID,
		redirectURI:  req.RedirectURI,
		state:        req.State,
		nonce:        req.Nonce,
		scopes:       slices.Clone(req.Scopes),
		responseType: req.ResponseType,
		responseMode: req.ResponseMode,
		challenge:    &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod},
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.purgeLocked(now)
	s.authRequests[a.id] = a
	return a.snapshot(), nil
}

// purgeLocked drops expired auth requests, codes and tokens, so a long dev
// session does not grow without bound. No background goroutine needed.
func (s *storage) purgeLocked(now time.Time) {
	for id, a := range s.authRequests {
		if now.Sub(a.created) > authRequestLifetime {
			delete(s.authRequests, id)
		}
	}
	for code, id := range s.codes {
		if _, ok := s.authRequests[id]; !ok {
			delete(s.codes, code)
		}
	}
	for id, t := range s.accessTokens {
		if now.After(t.expires) {
			delete(s.accessTokens, id)
		}
	}
	for v, t := range s.refreshTokens {
		if now.After(t.expires) {
			delete(s.refreshTokens, v)
		}
	}
}

func (s *storage) liveAuthRequestLocked(id string) (*authRequest, error) {
	a, ok := s.authRequests[id]
	if !ok || s.now().Sub(a.created) > authRequestLifetime {
		return nil, errors.New("auth request not found or expired")
	}
	return a, nil
}

func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return nil, err
	}
	return a.snapshot(), nil
}

// authRequest is AuthRequestByID for the login handlers.
func (s *storage) authRequest(id string) (*authRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return nil, err
	}
	return a.snapshot(), nil
}

// completeAuthRequest records that subject signed in for the request.
func (s *storage) completeAuthRequest(id, subject string) error {
	if s.user(subject) == nil {
		return fmt.Errorf("no user with subject %q", subject)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return err
	}
	if a.done {
		return errors.New("auth request already completed")
	}
	a.subject = subject
	a.authTime = s.now()
	a.done = true
	return nil
}

func (s *storage) AuthRequestByCode(_ context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errors.New("code unknown or already used")
	}
	a, err := s.liveAuthRequestLocked(id)
	if err != nil || !a.done || s.now().Sub(a.codeTime) > codeLifetime {
		return nil, errors.New("code expired")
	}
	return a.snapshot(), nil
}

func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, err := s.liveAuthRequestLocked(id)
	if err != nil {
		return err
	}
	a.codeTime = s.now()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest is called once the code has been exchanged, which makes
// every code single-use.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, reqID := range s.codes {
		if reqID == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// --- tokens

type accessToken struct {
	id       string
	clientID string
	subject  string
	scopes   []string
	expires  time.Time
}

type refreshToken struct {
	clientID string
	subject  string
	scopes   []string
	amr      []string
	authTime time.Time
	expires  time.Time
}

// refreshTokenRequest is what the library gets back for a refresh token.
type refreshTokenRequest struct {
	clientID      string
	subject       string
	scopes        []string // granted at sign-in; a rotated token keeps them
	currentScopes []string // possibly narrowed by the refresh request
	amr           []string
	authTime      time.Time
}

func (r *refreshTokenRequest) GetAMR() []string            { return r.amr }
func (r *refreshTokenRequest) GetAudience() []string       { return []string{r.clientID} }
func (r *refreshTokenRequest) GetAuthTime() time.Time      { return r.authTime }
func (r *refreshTokenRequest) GetClientID() string         { return r.clientID }
func (r *refreshTokenRequest) GetScopes() []string         { return r.currentScopes }
func (r *refreshTokenRequest) GetSubject() string          { return r.subject }
func (r *refreshTokenRequest) SetCurrentScopes(s []string) { r.currentScopes = s }

func (s *storage) newAccessTokenLocked(clientID, subject string, scopes []string) *accessToken {
	t := &accessToken{
		id:       rand.Text(),
		clientID: clientID,
		subject:  subject,
		scopes:   slices.Clone(scopes),
		expires:  s.now().Add(s.accessTTL),
	}
	s.accessTokens[t.id] = t
	return t
}

func (s *storage) CreateAccessToken(_ context.Context, request op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t *accessToken
	switch r := request.(type) {
	case *authRequest:
		t = s.newAccessTokenLocked(r.clientID, r.subject, r.scopes)
	case *clientCredentialsRequest:
		t = s.newAccessTokenLocked(r.clientID, r.clientID, r.scopes)
	default:
		return "", time.Time{}, oidc.ErrUnsupportedGrantType().WithParent(errNotSupported)
	}
	return t.id, t.expires, nil
}

// clientCredentialsRequest is an app-only token request (cartclass's
// CARTCLASS_GRAPH_AUTH=app): the token acts as the client itself, as Entra's
// app-only tokens do, and carries no refresh token.
type clientCredentialsRequest struct {
	clientID string
	scopes   []string
}

func (r *clientCredentialsRequest) GetSubject() string    { return r.clientID }
func (r *clientCredentialsRequest) GetAudience() []string { return []string{r.clientID} }
func (r *clientCredentialsRequest) GetScopes() []string   { return r.scopes }

// ClientCredentials authenticates a confidential client for the client_credentials grant.
func (s *storage) ClientCredentials(ctx context.Context, clientID, secret string) (op.Client, error) {
	if err := s.AuthorizeClientIDSecret(ctx, clientID, secret); err != nil {
		return nil, err
	}
	return s.clients[clientID], nil
}

func (s *storage) ClientCredentialsTokenRequest(_ context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	return &clientCredentialsRequest{clientID: clientID, scopes: slices.Clone(scopes)}, nil
}

// CreateAccessAndRefreshTokens issues a new refresh token each time and,
// on a refresh, retires the one presented (rotation, as Entra does).
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, request op.TokenRequest, current string) (string, string, time.Time, error) {
	var next refreshToken
	var scopes []string
	switch r := request.(type) {
	case *authRequest:
		next = refreshToken{clientID: r.clientID, subject: r.subject, scopes: r.scopes, authTime: r.authTime}
		scopes = r.scopes
	case *refreshTokenRequest:
		next = refreshToken{clientID: r.clientID, subject: r.subject, scopes: r.scopes, amr: r.amr, authTime: r.authTime}
		scopes = r.currentScopes
	default:
		return "", "", time.Time{}, oidc.ErrUnsupportedGrantType().WithParent(errNotSupported)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if current != "" {
		old, ok := s.refreshTokens[current]
		// A concurrent refresh may have rotated it since the library looked it up.
		if !ok || old.clientID != next.clientID || old.subject != next.subject {
			return "", "", time.Time{}, oidc.ErrInvalidGrant().WithDescription("refresh token already used")
		}
		delete(s.refreshTokens, current)
	}
	next.scopes = slices.Clone(next.scopes)
	next.expires = s.now().Add(s.refreshTTL)
	value := rand.Text()
	s.refreshTokens[value] = &next
	t := s.newAccessTokenLocked(next.clientID, next.subject, scopes)
	return t.id, value, t.expires, nil
}

func (s *storage) TokenRequestByRefreshToken(_ context.Context, value string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[value]
	if !ok || s.now().After(t.expires) {
		return nil, errors.New("refresh token unknown, used or expired")
	}
	return &refreshTokenRequest{
		clientID:      t.clientID,
		subject:       t.subject,
		scopes:        slices.Clone(t.scopes),
		currentScopes: slices.Clone(t.scopes),
		amr:           t.amr,
		authTime:      t.authTime,
	}, nil
}

// TerminateSession ends the user's grants to the client (end_session with
// an id_token_hint): its access and refresh tokens stop working.
func (s *storage) TerminateSession(_ context.Context, subject, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, t := range s.accessTokens {
		if t.subject == subject && t.clientID == clientID {
			delete(s.accessTokens, id)
		}
	}
	for v, t := range s.refreshTokens {
		if t.subject == subject && t.clientID == clientID {
			delete(s.refreshTokens, v)
		}
	}
	return nil
}

func (s *storage) GetRefreshTokenInfo(_ context.Context, clientID, value string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.refreshTokens[value]
	if !ok || t.clientID != clientID {
		return "", "", op.ErrInvalidRefreshToken
	}
	return t.subject, value, nil
}

func (s *storage) RevokeToken(_ context.Context, tokenOrID, _, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.accessTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.accessTokens, tokenOrID)
		return nil
	}
	if t, ok := s.refreshTokens[tokenOrID]; ok {
		if t.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.refreshTokens, tokenOrID)
	}
	// Unknown tokens count as revoked (RFC 7009, section 2.2).
	return nil
}

// --- keys

type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

func (k signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k signingKey) Key() any                                    { return k.key }
func (k signingKey) ID() string                                  { return k.kid }

type publicKey struct {
	kid string
	key *rsa.PublicKey
}

func (k publicKey) ID() string                         { return k.kid }
func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return k.key }

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	return signingKey{kid: s.kid, key: s.key}, nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	return []op.Key{publicKey{kid: s.kid, key: &s.key.PublicKey}}, nil
}

// --- clients

type client struct {
	id             string
	secret         string
	redirectURIs   []string
	postLogoutURIs []string
	loginURL       func(string) string
	idTokenTTL     time.Duration
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return c.postLogoutURIs }

// ApplicationType is web for every client: web clients may use http
// redirect URIs with the code flow, which loopback development needs.
func (c *client) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }

// AuthMethod is client_secret_basic for confidential clients; the library
// then also accepts the secret in the form body (client_secret_post).
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.secret == "" {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials}
}
func (c *client) LoginURL(authRequestID string) string { return c.loginURL(authRequestID) }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return c.idTokenTTL }
func (c *client) DevMode() bool                        { return false }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// IsScopeAllowed keeps resource scopes such as Graph's in the grant, as
// Entra would, instead of silently dropping them.
func (c *client) IsScopeAllowed(string) bool { return true }

// IDTokenUserinfoClaimsAssertion puts name and email into the ID token even
// though an access token is issued too, as Entra does.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }

func (s *storage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	c, ok := s.clients[clientID]
	if !ok {
		return nil, errors.New("unknown client")
	}
	return c, nil
}

func (s *storage) AuthorizeClientIDSecret(_ context.Context, clientID, secret string) error {
	c, ok := s.clients[clientID]
	if !ok || c.secret == "" || subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return errors.New("invalid client credentials")
	}
	return nil
}

// --- claims

// SetUserinfoFromScopes is deprecated by the library; SetUserinfoFromRequest does the work.
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest fills the ID token's user claims.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	u := s.user(req.GetSubject())
	if u == nil {
		return errors.New("user no longer exists")
	}
	s.fillUserinfo(info, u, scopes)
	return nil
}

func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, subject, _ string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || s.now().After(t.expires) {
		return errors.New("access token invalid or expired")
	}
	u := s.user(subject)
	if u == nil {
		return errors.New("user no longer exists")
	}
	s.fillUserinfo(info, u, t.scopes)
	return nil
}

func (s *storage) SetIntrospectionFromToken(_ context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	s.mu.Lock()
	t, ok := s.accessTokens[tokenID]
	s.mu.Unlock()
	if !ok || t.subject != subject || t.clientID != clientID || s.now().After(t.expires) {
		return errors.New("access token invalid or expired")
	}
	u := s.user(subject)
	if u == nil {
		return errors.New("user no longer exists")
	}
	info := new(oidc.UserInfo)
	s.fillUserinfo(info, u, t.scopes)
	resp.SetUserInfo(info)
	resp.Active = true
	resp.ClientID = t.clientID
	resp.Scope = t.scopes
	resp.Expiration = oidc.FromTime(t.expires)
	return nil
}

// fillUserinfo sets the claims Entra puts in its tokens: name and
// preferred_username with profile, email with email, and always tid, oid
// and (when the user has any) roles and groups.
func (s *storage) fillUserinfo(info *oidc.UserInfo, u *User, scopes []string) {
	info.Subject = u.Subject
	if slices.Contains(scopes, oidc.ScopeProfile) {
		info.Name = u.Name
		info.PreferredUsername = u.Email
		if info.PreferredUsername == "" {
			info.PreferredUsername = u.Subject
		}
	}
	if slices.Contains(scopes, oidc.ScopeEmail) {
		info.Email = u.Email
	}
	for k, v := range s.customClaims(u) {
		info.AppendClaims(k, v)
	}
}

func (s *storage) customClaims(u *User) map[string]any {
	oid := u.ObjectID
	if oid == "" {
		oid = u.Subject
	}
	claims := map[string]any{"tid": s.tenantID, "oid": oid}
	if len(u.Roles) > 0 {
		claims["roles"] = slices.Clone(u.Roles)
	}
	if len(u.Groups) > 0 {
		claims["groups"] = slices.Clone(u.Groups)
	}
	return claims
}

func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errNotSupported
}

func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errNotSupported
}

func (s *storage) Health(context.Context) error { return nil }
