// Package devidp is a real OpenID Connect provider for development and tests.
//
// It runs in-process on loopback and is built on the OpenID Provider of
// github.com/zitadel/oidc/v3 (package op), with a small in-memory storage of
// our own. cartclass talks to it exactly as it talks to Microsoft Entra ID:
// discovery, authorize, token, JWKS, userinfo and end_session over HTTP, code
// flow with PKCE (S256 only), confidential clients, rotating refresh tokens
// and Entra-like ID token claims (roles, groups, tid, oid).
//
// Instead of a password the authorize step shows a page listing the
// configured users ("Sign in as Dev Admin", …) and a "Deny" button. Tests
// can skip the page with SetAutoLogin, and can tamper with the next ID token
// (OverrideNextIDToken) to drive the cases a relying party must reject.
//
// Never run it outside development: anyone who can reach it can sign in as
// any of its users.
package devidp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// Subjects and roles of DefaultUsers.
const (
	SubjectAdmin  = "dev-admin"
	SubjectViewer = "dev-viewer"
	SubjectNobody = "dev-nobody"

	RoleAdmin  = "CartClass.Admin"
	RoleViewer = "CartClass.Viewer"

	// DevTenantID is the tid claim when Config.TenantID is empty.
	DevTenantID = "d0d0cafe-0000-4000-8000-000000000001"
)

// Paths served besides the library's endpoints.
const (
	loginPath     = "/login"
	loggedOutPath = "/logged-out"
)

// Config configures a Provider.
type Config struct {
	// Issuer is the exact issuer URL, scheme, host and port without a path
	// or trailing slash, e.g. "http://127.0.0.1:8081". It must be the
	// address the provider is reachable at. Plain http is allowed.
	Issuer  string
	Clients []Client
	Users   []User

	// Logger receives the provider's own messages (never secrets or
	// tokens). Nil discards them. The zitadel library logs protocol errors
	// through slog.Default; it cannot be given a logger.
	Logger *slog.Logger

	// SigningKey signs ID tokens (RS256). Nil generates a fresh 2048-bit key.
	SigningKey *rsa.PrivateKey
	// KeyID is the JWKS kid of SigningKey. Empty picks a random one.
	KeyID string
	// Now is the clock for auth times and access and refresh token expiry.
	// Nil means time.Now. The library stamps iat/exp of ID tokens with
	// time.Now itself; use OverrideNextIDToken to issue an expired one.
	Now func() time.Time

	// TenantID is the tid claim. Empty means DevTenantID.
	TenantID string
	// Lifetimes; zero means one hour for ID and access tokens and 24 hours
	// for refresh tokens.
	IDTokenLifetime      time.Duration
	AccessTokenLifetime  time.Duration
	RefreshTokenLifetime time.Duration
}

// Client is a registered relying party.
type Client struct {
	ID string
	// Secret authenticates the client at the token endpoint (client_secret_basic
	// or client_secret_post). Empty registers a public client (PKCE only).
	Secret string
	// RedirectURIs are matched exactly.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the allowed post_logout_redirect_uri values.
	PostLogoutRedirectURIs []string
}

// User is a person who can sign in.
type User struct {
	// Subject is the stable sub claim.
	Subject string
	Name    string
	Email   string
	// ObjectID is the oid claim (Entra's object id). Empty means Subject.
	ObjectID string
	// Roles go into the roles claim (Entra app roles); omitted when empty.
	Roles []string
	// Groups go into the groups claim; omitted when empty.
	Groups []string
}

// DefaultUsers returns the dev users: an admin, a viewer and a user with no
// role, with stable subjects (SubjectAdmin, SubjectViewer, SubjectNobody).
func DefaultUsers() []User {
	return []User{
		{
			Subject:  SubjectAdmin,
			Name:     "Dev Admin",
			Email:    "dev.admin@cartclass.test",
			ObjectID: "00000000-0000-4000-8000-00000000ad01",
			Roles:    []string{RoleAdmin},
		},
		{
			Subject:  SubjectViewer,
			Name:     "Dev Viewer",
			Email:    "dev.viewer@cartclass.test",
			ObjectID: "00000000-0000-4000-8000-00000000ee01",
			Roles:    []string{RoleViewer},
		},
		{
			Subject:  SubjectNobody,
			Name:     "Dev Nobody",
			Email:    "dev.nobody@cartclass.test",
			ObjectID: "00000000-0000-4000-8000-00000000bb01",
		},
	}
}

// Provider is an in-process OpenID Connect provider. Create one with New or
// Start; the zero value is not usable. It is safe for concurrent use.
type Provider struct {
	issuer  string
	log     *slog.Logger
	users   []User // in configured order, for the login page
	storage *storage
	op      *op.Provider
	handler http.Handler

	foreignOnce sync.Once
	foreignKey  *rsa.PrivateKey
	foreignErr  error

	mu        sync.Mutex
	autoLogin string
	overrides []idTokenOverride
	srv       *http.Server
	closed    bool
	serving   sync.WaitGroup // goroutines started by Start
}

// New builds a provider for cfg without listening anywhere. Serve it with
// Serve, or mount Handler on a server whose address matches cfg.Issuer.
func New(cfg Config) (*Provider, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.TenantID == "" {
		cfg.TenantID = DevTenantID
	}
	if cfg.IDTokenLifetime <= 0 {
		cfg.IDTokenLifetime = time.Hour
	}
	if cfg.AccessTokenLifetime <= 0 {
		cfg.AccessTokenLifetime = time.Hour
	}
	if cfg.RefreshTokenLifetime <= 0 {
		cfg.RefreshTokenLifetime = 24 * time.Hour
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	key := cfg.SigningKey
	if key == nil {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			return nil, fmt.Errorf("devidp: generate signing key: %w", err)
		}
	}
	kid := cfg.KeyID
	if kid == "" {
		kid = "devidp-" + rand.Text()[:12]
	}

	p := &Provider{
		issuer: cfg.Issuer,
		log:    logger,
		users:  slices.Clone(cfg.Users),
	}
	p.storage = newStorage(cfg, key, kid, p.loginURL)

	opConfig := &op.Config{
		DefaultLogoutRedirectURI: cfg.Issuer + loggedOutPath,
		CodeMethodS256:           true,
		AuthMethodPost:           true,
		GrantTypeRefreshToken:    true,
		SupportedScopes: []string{
			oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail, oidc.ScopeOfflineAccess,
		},
		SupportedClaims: append(slices.Clone(op.DefaultSupportedClaims), "roles", "groups", "tid", "oid"),
	}
	// Access tokens are opaque, encrypted with a per-provider key.
	if _, err := rand.Read(opConfig.CryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: generate crypto key: %w", err)
	}
	provider, err := op.NewProvider(opConfig, p.storage, op.StaticIssuer(cfg.Issuer), op.WithAllowInsecure())
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	p.op = provider

	mux := http.NewServeMux()
	mux.HandleFunc("GET "+loginPath, p.handleLoginPage)
	mux.HandleFunc("POST "+loginPath, p.handleLoginSubmit)
	mux.HandleFunc("GET "+loggedOutPath, p.handleLoggedOut)
	mux.Handle(provider.TokenEndpoint().Relative(), p.tokenEndpoint(provider))
	mux.Handle("/", provider)
	p.handler = mux
	return p, nil
}

// Start listens on the issuer's host and port and serves in the background
// until Close. Port 0 in the issuer picks a free port and puts it into the
// issuer, keeping the host name: "http://localhost:0" becomes
// "http://localhost:<port>". An empty cfg.Issuer means "http://127.0.0.1:0".
func Start(cfg Config) (*Provider, error) {
	if cfg.Issuer == "" {
		cfg.Issuer = "http://127.0.0.1:0"
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("devidp: issuer: %w", err)
	}
	// Anyone who reaches the provider can sign in as any user: loopback only.
	if h := u.Hostname(); h != "localhost" && !net.ParseIP(h).IsLoopback() {
		return nil, fmt.Errorf("devidp: issuer host %q is not loopback", h)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("devidp: listen: %w", err)
	}
	if u.Port() == "0" {
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		u.Host = net.JoinHostPort(u.Hostname(), port)
		cfg.Issuer = u.String()
	}
	p, err := New(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	p.serving.Add(1)
	go func() {
		defer p.serving.Done()
		if err := p.Serve(ln); err != nil {
			p.log.Error("devidp serve", "error", err)
		}
	}()
	p.log.Info("dev identity provider listening", "issuer", p.issuer)
	return p, nil
}

// Serve answers requests on l until Close or Shutdown, then returns nil.
// l must be reachable at the issuer's address.
func (p *Provider) Serve(l net.Listener) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		l.Close()
		return nil
	}
	if p.srv == nil {
		p.srv = &http.Server{
			Handler:           p.handler,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
		}
	}
	srv := p.srv
	p.mu.Unlock()

	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler returns the provider's HTTP handler, for mounting on a server
// (e.g. an httptest.Server) whose URL equals the issuer.
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer returns the issuer URL, as it appears in discovery and in tokens.
func (p *Provider) Issuer() string { return p.issuer }

// Shutdown stops the server started by Serve or Start gracefully, waiting
// for active requests until ctx ends.
func (p *Provider) Shutdown(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	srv := p.srv
	p.mu.Unlock()

	var err error
	if srv != nil {
		if err = srv.Shutdown(ctx); err != nil {
			srv.Close()
		}
	}
	p.serving.Wait()
	return err
}

// Close shuts the provider down, waiting up to five seconds for active
// requests. It is safe to call more than once.
func (p *Provider) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return p.Shutdown(ctx)
}

// SetAutoLogin makes every authorize request complete at once as the user
// with subject, without showing the login page, so an HTTP client that
// follows redirects ends at the client's redirect_uri with a code. An empty
// subject turns auto-login off. An unknown subject is an error. The
// setting is per provider: parallel tests that sign in as different users
// should each start their own provider.
func (p *Provider) SetAutoLogin(subject string) error {
	if subject != "" && p.storage.user(subject) == nil {
		return fmt.Errorf("devidp: no user with subject %q", subject)
	}
	p.mu.Lock()
	p.autoLogin = subject
	p.mu.Unlock()
	return nil
}

// SetRoles replaces the roles and groups of the user with subject, as an admin changing
// app-role or group assignments at the provider would: every token issued from now on,
// refreshed ones included, carries the new claims.
func (p *Provider) SetRoles(subject string, roles, groups []string) error {
	return p.storage.setRoles(subject, roles, groups)
}

// RevokeRefreshTokens ends the refresh tokens of the user with subject: their next
// refresh is refused with invalid_grant.
func (p *Provider) RevokeRefreshTokens(subject string) {
	p.storage.revokeRefreshTokens(subject)
}

func (p *Provider) autoLoginSubject() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.autoLogin
}

// loginURL is where the library sends the browser for the login step.
func (p *Provider) loginURL(authRequestID string) string {
	return loginPath + "?authRequestID=" + url.QueryEscape(authRequestID)
}

func validate(cfg Config) error {
	var errs []error
	u, err := url.Parse(cfg.Issuer)
	switch {
	case cfg.Issuer == "":
		errs = append(errs, errors.New("Issuer is required"))
	case err != nil:
		errs = append(errs, fmt.Errorf("Issuer: %w", err))
	case u.Scheme != "http" && u.Scheme != "https", u.Host == "":
		errs = append(errs, fmt.Errorf("Issuer %q: want scheme://host:port", cfg.Issuer))
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		// The library's routes live at the root; an issuer path would need
		// prefix stripping that nothing here does.
		errs = append(errs, fmt.Errorf("Issuer %q: must have no path, query or trailing slash", cfg.Issuer))
	}
	if len(cfg.Clients) == 0 {
		errs = append(errs, errors.New("Clients: at least one client is required"))
	}
	clientIDs := map[string]bool{}
	for i, c := range cfg.Clients {
		switch {
		case c.ID == "":
			errs = append(errs, fmt.Errorf("Clients[%d]: ID is required", i))
		case clientIDs[c.ID]:
			errs = append(errs, fmt.Errorf("Clients[%d]: duplicate ID %q", i, c.ID))
		}
		clientIDs[c.ID] = true
		if len(c.RedirectURIs) == 0 {
			errs = append(errs, fmt.Errorf("Clients[%d]: at least one redirect URI is required", i))
		}
	}
	if len(cfg.Users) == 0 {
		errs = append(errs, errors.New("Users: at least one user is required (see DefaultUsers)"))
	}
	subjects := map[string]bool{}
	for i, u := range cfg.Users {
		switch {
		case u.Subject == "":
			errs = append(errs, fmt.Errorf("Users[%d]: Subject is required", i))
		case subjects[u.Subject]:
			errs = append(errs, fmt.Errorf("Users[%d]: duplicate Subject %q", i, u.Subject))
		}
		subjects[u.Subject] = true
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("devidp: invalid config: %w", err)
	}
	return nil
}
