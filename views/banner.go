package views

import (
	"context"
	"strings"
	"time"

	"github.com/cartclass/cartclass/push"
)

// PauseBanner is the admins' site-wide notice while pushing to Graph is held back for
// reason (nil when all is well): until when, which permission is missing, whose sign-in
// the waiting changes need (their names). The sync panel says the same at length.
//
// ctx carries the school's time zone (WithZone).
func PauseBanner(ctx context.Context, reason push.Reason, until time.Time, scope string, waiting []string) *Banner {
	switch reason {
	case push.ReasonThrottled:
		return &Banner{Kind: "warning", Message: "Microsoft Graph asked cartclass to slow down: pushing is paused until " + formatClock(ctx, until) + "."}
	case push.ReasonPermission:
		return &Banner{Kind: "danger", Message: "Pushing to Microsoft Graph is paused: the permission " + scope + " is missing."}
	case push.ReasonCredentials:
		return &Banner{Kind: "danger", Message: "Pushing to Microsoft Graph is paused: Graph refused cartclass's own credentials. " +
			"Check CARTCLASS_GRAPH_CLIENT_ID, CARTCLASS_GRAPH_CLIENT_SECRET and the app's tenant, then press Push now."}
	case push.ReasonSignIn:
		return &Banner{Kind: "warning", Message: "Changes by " + strings.Join(waiting, ", ") +
			" wait to reach Intune: their sign-in expired. They can sign in again, or any admin can press Push now."}
	}
	return nil
}
