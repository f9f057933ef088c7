package web

import (
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sign-in is limited per client address, so nobody can make the school's admins wait by
// hammering the endpoints anyone may reach. A sign-in costs two events (the start and the
// callback). The burst lets a staff room behind one school NAT sign in at once (20
// people); after that each address gets one sign-in a second.
const (
	signInRate   = rate.Limit(2) // events per second per client address
	signInBurst  = 40
	maxLimited   = 10_000 // client addresses remembered at once
	limiterSweep = time.Minute
)

// clientLimiter is a token bucket per client address with bounded memory: idle buckets are
// forgotten (a full bucket is the same as a new one), and when more addresses than
// maxLimited are active at once, the newcomers share one bucket.
type clientLimiter struct {
	limit    rate.Limit
	burst    int
	max      int
	mu       sync.Mutex
	clients  map[string]*rate.Limiter
	overflow *rate.Limiter
	swept    time.Time
}

func newClientLimiter(limit rate.Limit, burst, max int) *clientLimiter {
	return &clientLimiter{limit: limit, burst: burst, max: max, clients: map[string]*rate.Limiter{},
		overflow: rate.NewLimiter(limit, burst)}
}

// allow takes one event for client at now. When the bucket is empty it takes nothing and
// says how long until the next event would be allowed.
func (l *clientLimiter) allow(client string, now time.Time) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.clients[client]
	if !ok {
		if len(l.clients) >= l.max && now.Sub(l.swept) >= time.Second {
			l.sweep(now)
		}
		if len(l.clients) < l.max {
			lim = rate.NewLimiter(l.limit, l.burst)
			l.clients[client] = lim
		} else {
			lim = l.overflow
		}
	}
	if now.Sub(l.swept) >= limiterSweep {
		l.sweep(now)
	}
	res := lim.ReserveN(now, 1)
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// sweep forgets every client whose bucket has refilled. Caller holds mu.
func (l *clientLimiter) sweep(now time.Time) {
	l.swept = now
	for k, lim := range l.clients {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

// clientKey is who a request comes from for rate limiting: the peer's address. Only when
// the peer is one of CARTCLASS_TRUSTED_PROXIES (a TLS proxy in front of cartclass) is
// X-Forwarded-For read, from the right, up to the first address that is not a trusted
// proxy: anything further left was written by the client and proves nothing. IPv6 clients
// are grouped by /64, the block one household or school usually gets.
func (s *Server) clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if s.trustedProxy(ip) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0; i-- {
			hop := net.ParseIP(strings.TrimSpace(hops[i]))
			if hop == nil {
				break // unreadable: stop at the last proxy we trust
			}
			ip = hop
			if !s.trustedProxy(hop) {
				break
			}
		}
	}
	if ip.To4() == nil {
		return ip.Mask(net.CIDRMask(64, 128)).String()
	}
	return ip.String()
}

func (s *Server) trustedProxy(ip net.IP) bool {
	for _, n := range s.cfg.TrustedProxies {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

// rateLimitedError is a client past its sign-in budget; the answer is 429 with Retry-After.
type rateLimitedError struct{ retryAfter time.Duration }

func (e *rateLimitedError) Error() string { return "too many sign-in requests" }

// retryAfterSeconds is Retry-After's value: whole seconds, rounded up, at least one.
func (e *rateLimitedError) retryAfterSeconds() string {
	return strconv.Itoa(max(1, int(math.Ceil(e.retryAfter.Seconds()))))
}

// A client past its budget is answered slowly: its 429 waits up to tarpitMax before it goes
// out, so a flood paces itself to about one request a second per connection instead of
// taking the CPU the admins' saves need. At most tarpitSlots answers wait at once; past
// that they go out at once.
const (
	tarpitMax   = time.Second
	tarpitSlots = 1024
)

// limitSignIn applies the per-client sign-in budget to next.
func (s *Server) limitSignIn(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok, wait := s.signInLimiter.allow(s.clientKey(r), s.now())
		if ok {
			next(w, r)
			return
		}
		select {
		case s.tarpit <- struct{}{}:
			t := time.NewTimer(min(wait, tarpitMax))
			select {
			case <-t.C:
			case <-r.Context().Done():
			}
			t.Stop()
			<-s.tarpit
		default:
		}
		s.fail(w, r, &rateLimitedError{retryAfter: wait})
	}
}
