package devidp

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
)

// Test hooks for the ID tokens a relying party must reject.
//
// The library builds and signs the ID token inside its token handler and
// offers no hook between the two, so a pending override works on the
// response instead: the token endpoint's JSON is buffered, the id_token's
// claims are decoded, handed to the mutate function, signed again (with the
// provider's key unless the Signature says otherwise) and put back. The
// access and refresh tokens are untouched.

// Signature says how a tampered or hand-made ID token is signed.
type Signature int

const (
	// SignatureValid signs with the provider's key (RS256, kid in the JWKS).
	SignatureValid Signature = iota
	// SignatureForeignKey signs with a key that is not in the JWKS but under
	// the provider's kid, so the signature does not verify.
	SignatureForeignKey
	// SignatureNone produces an unsigned token with alg "none".
	SignatureNone
)

type idTokenOverride struct {
	sig    Signature
	mutate func(claims map[string]any)
}

// OverrideNextIDToken lets mutate change the claims of the next ID token the
// token endpoint issues (any grant), before it is signed again with the
// provider's key. Numbers arrive as json.Number. Calls queue up: each token
// response consumes one. Typical uses: claims["nonce"] = "wrong",
// claims["aud"] = "someone-else", claims["iss"] = "http://evil",
// claims["exp"] = time.Now().Add(-time.Hour).Unix().
func (p *Provider) OverrideNextIDToken(mutate func(claims map[string]any)) {
	p.OverrideNextIDTokenSignature(SignatureValid, mutate)
}

// OverrideNextIDTokenSignature is OverrideNextIDToken with a choice of
// signature, e.g. SignatureForeignKey for a bad signature or SignatureNone
// for alg=none. mutate may be nil.
func (p *Provider) OverrideNextIDTokenSignature(sig Signature, mutate func(claims map[string]any)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.overrides = append(p.overrides, idTokenOverride{sig: sig, mutate: mutate})
}

func (p *Provider) popOverride() (idTokenOverride, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.overrides) == 0 {
		return idTokenOverride{}, false
	}
	o := p.overrides[0]
	p.overrides = p.overrides[1:]
	return o, true
}

func (p *Provider) pushBackOverride(o idTokenOverride) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.overrides = append([]idTokenOverride{o}, p.overrides...)
}

// SignIDToken signs arbitrary claims with the provider's key, as RS256 with
// the provider's kid, so the result verifies against the JWKS.
func (p *Provider) SignIDToken(claims map[string]any) (string, error) {
	return p.SignIDTokenWith(SignatureValid, claims)
}

// SignIDTokenWith signs arbitrary claims the way sig says.
func (p *Provider) SignIDTokenWith(sig Signature, claims map[string]any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devidp: encode claims: %w", err)
	}
	var key *rsa.PrivateKey
	switch sig {
	case SignatureValid:
		key = p.storage.key
	case SignatureForeignKey:
		if key, err = p.foreign(); err != nil {
			return "", err
		}
	case SignatureNone:
		enc := base64.RawURLEncoding
		return enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + enc.EncodeToString(payload) + ".", nil
	default:
		return "", fmt.Errorf("devidp: unknown signature %d", sig)
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: p.storage.kid}},
		(&jose.SignerOptions{}).WithType("JWT"),
	)
	if err != nil {
		return "", fmt.Errorf("devidp: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("devidp: sign: %w", err)
	}
	return jws.CompactSerialize()
}

func (p *Provider) foreign() (*rsa.PrivateKey, error) {
	p.foreignOnce.Do(func() {
		p.foreignKey, p.foreignErr = rsa.GenerateKey(rand.Reader, 2048)
	})
	return p.foreignKey, p.foreignErr
}

// Claims returns the claims of a valid ID token for the user with subject,
// issued to clientID with nonce, valid for the configured ID token
// lifetime from now: a starting point for SignIDToken.
func (p *Provider) Claims(subject, clientID, nonce string) (map[string]any, error) {
	u := p.storage.user(subject)
	if u == nil {
		return nil, fmt.Errorf("devidp: no user with subject %q", subject)
	}
	info := new(oidc.UserInfo)
	p.storage.fillUserinfo(info, u, []string{oidc.ScopeOpenID, oidc.ScopeProfile, oidc.ScopeEmail})
	raw, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("devidp: encode claims: %w", err)
	}
	claims := map[string]any{}
	if err := json.Unmarshal(raw, &claims); err != nil {
		return nil, fmt.Errorf("devidp: decode claims: %w", err)
	}
	// Custom claims are not in the UserInfo JSON.
	for k, v := range p.storage.customClaims(u) {
		claims[k] = v
	}
	now := time.Now()
	claims["iss"] = p.issuer
	claims["aud"] = []string{clientID}
	claims["azp"] = clientID
	claims["iat"] = now.Unix()
	claims["auth_time"] = now.Unix()
	claims["exp"] = now.Add(p.storage.idTTL).Unix()
	if nonce != "" {
		claims["nonce"] = nonce
	}
	return claims, nil
}

// tokenEndpoint passes token requests to the library and applies a pending
// ID token override to the first successful response.
func (p *Provider) tokenEndpoint(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o, ok := p.popOverride()
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		rec := &bufferedResponse{header: http.Header{}}
		next.ServeHTTP(rec, r)
		body, err := p.rewriteIDToken(rec, o)
		if err != nil {
			// Nothing to override in a failed or odd response: keep the
			// override for the next one and answer as the library did.
			p.pushBackOverride(o)
			if !errors.Is(err, errNoIDToken) {
				p.log.Warn("devidp id token override", "error", err)
			}
			body = rec.body.Bytes()
		}
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.statusCode())
		w.Write(body)
	})
}

var errNoIDToken = errors.New("no id_token in the response")

func (p *Provider) rewriteIDToken(rec *bufferedResponse, o idTokenOverride) ([]byte, error) {
	if rec.statusCode() != http.StatusOK {
		return nil, errNoIDToken
	}
	var resp map[string]json.RawMessage
	if err := json.Unmarshal(rec.body.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("decode token response: %w", err)
	}
	var idToken string
	if raw, ok := resp["id_token"]; !ok || json.Unmarshal(raw, &idToken) != nil || idToken == "" {
		return nil, errNoIDToken
	}
	claims, err := decodeClaims(idToken)
	if err != nil {
		return nil, err
	}
	if o.mutate != nil {
		o.mutate(claims)
	}
	signed, err := p.SignIDTokenWith(o.sig, claims)
	if err != nil {
		return nil, err
	}
	if resp["id_token"], err = json.Marshal(signed); err != nil {
		return nil, err
	}
	return json.Marshal(resp)
}

// decodeClaims reads a JWT's payload without verifying it: the token was
// just issued by this provider.
func decodeClaims(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("id_token is not a compact JWS")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("decode id_token payload: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	claims := map[string]any{}
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("decode id_token claims: %w", err)
	}
	return claims, nil
}

// bufferedResponse holds a handler's response so it can be rewritten.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(status int) {
	if b.status == 0 {
		b.status = status
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func (b *bufferedResponse) statusCode() int {
	if b.status == 0 {
		return http.StatusOK
	}
	return b.status
}
