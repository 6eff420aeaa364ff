package natsutil

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// CredentialsDir is where the embedded default keeps the credentials of its roles:
// broadcaster.creds, resource.creds and auditor.creds, in the NATS credentials-file format
// (a user JWT and its seed) that nats.go's UserCredentials and the nats CLI read. The
// directory is 0700 and each file 0600; keys/ below it holds the operator and account
// seeds that sign them.
func CredentialsDir(dataDir string) string { return filepath.Join(dataDir, "credentials") }

// CredentialsFile is the credentials file of role for the embedded server of dataDir.
func CredentialsFile(dataDir string, role Role) string {
	return filepath.Join(CredentialsDir(dataDir), string(role)+".creds")
}

// embeddedAuth is the embedded server's decentralized authentication: an operator trusted
// by the server, the REVOCAST account that holds the stream and buckets, a system account,
// and one user per role signed by the account key. Every connection must present a user
// JWT of that account, so an anonymous connection is refused.
type embeddedAuth struct {
	operator *jwt.OperatorClaims
	resolver *server.MemAccResolver
	system   string // public key of the system account
	account  string // public key of the REVOCAST account
}

// setupAuth loads the keys of dataDir's credentials directory, creating what is missing, and
// (re)writes a role's credentials file when it is missing or its permissions are not the
// role's current ones. The same user key is kept, so copies handed to other hosts keep
// working across restarts.
func setupAuth(dataDir string) (*embeddedAuth, error) {
	dir := CredentialsDir(dataDir)
	keysDir := filepath.Join(dir, "keys")
	if err := os.MkdirAll(keysDir, 0o700); err != nil {
		return nil, fmt.Errorf("credentials directory: %w", err)
	}
	for _, d := range []string{dir, keysDir} {
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, fmt.Errorf("credentials directory: %w", err)
		}
	}
	op, err := loadOrCreateKey(filepath.Join(keysDir, "operator.nk"), nkeys.PrefixByteOperator)
	if err != nil {
		return nil, err
	}
	acc, err := loadOrCreateKey(filepath.Join(keysDir, "account.nk"), nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	sys, err := loadOrCreateKey(filepath.Join(keysDir, "system-account.nk"), nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	opPub, _ := op.PublicKey()
	accPub, _ := acc.PublicKey()
	sysPub, _ := sys.PublicKey()

	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "revocast-embedded"
	oc.SystemAccount = sysPub
	opJWT, err := oc.Encode(op)
	if err != nil {
		return nil, fmt.Errorf("operator JWT: %w", err)
	}
	operator, err := jwt.DecodeOperatorClaims(opJWT)
	if err != nil {
		return nil, fmt.Errorf("operator JWT: %w", err)
	}
	resolver := &server.MemAccResolver{}
	ac := jwt.NewAccountClaims(accPub)
	ac.Name = "REVOCAST"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1,
		MaxAckPending: -1, MemoryMaxStreamBytes: -1, DiskMaxStreamBytes: -1}
	sc := jwt.NewAccountClaims(sysPub)
	sc.Name = "SYS"
	for _, c := range []*jwt.AccountClaims{ac, sc} {
		token, err := c.Encode(op)
		if err != nil {
			return nil, fmt.Errorf("account %s JWT: %w", c.Name, err)
		}
		if err := resolver.Store(c.Subject, token); err != nil {
			return nil, fmt.Errorf("account %s JWT: %w", c.Name, err)
		}
	}
	for _, role := range Roles {
		if err := ensureUser(CredentialsFile(dataDir, role), role, acc, accPub); err != nil {
			return nil, err
		}
	}
	return &embeddedAuth{operator: operator, resolver: resolver, system: sysPub, account: accPub}, nil
}

// apply makes opts require the users of a.
func (a *embeddedAuth) apply(opts *server.Options) {
	opts.TrustedOperators = []*jwt.OperatorClaims{a.operator}
	opts.AccountResolver = a.resolver
	opts.SystemAccount = a.system
}

func loadOrCreateKey(path string, prefix nkeys.PrefixByte) (nkeys.KeyPair, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		kp, err := nkeys.CreatePair(prefix)
		if err != nil {
			return nil, err
		}
		seed, _ := kp.Seed()
		if err := writeFileAtomic(path, append(seed, '\n')); err != nil {
			return nil, err
		}
		return kp, nil
	}
	if err != nil {
		return nil, err
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("%s: not an nkey seed: %w", path, err)
	}
	if pub, _ := kp.PublicKey(); nkeys.Prefix(pub) != prefix {
		return nil, fmt.Errorf("%s: holds a %s key, want %s", path, nkeys.Prefix(pub), prefix)
	}
	return kp, nil
}

// ensureUser keeps path as it is when it holds a user of the account with the role's
// permissions, and writes it otherwise.
func ensureUser(path string, role Role, acc nkeys.KeyPair, accPub string) error {
	want := role.Permissions()
	wantJSON, _ := json.Marshal(want)
	var seed []byte
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if kp, err := jwt.ParseDecoratedUserNKey(b); err == nil {
			seed, _ = kp.Seed()
			pub, _ := kp.PublicKey()
			token, _ := jwt.ParseDecoratedJWT(b)
			if uc, err := jwt.DecodeUserClaims(token); err == nil && uc.Issuer == accPub && uc.Subject == pub &&
				uc.Name == string(role) {
				if got, _ := json.Marshal(uc.Permissions); bytes.Equal(got, wantJSON) {
					return os.Chmod(path, 0o600)
				}
			}
		}
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	var user nkeys.KeyPair
	if seed != nil {
		user, _ = nkeys.FromSeed(seed)
	} else if user, err = nkeys.CreateUser(); err != nil {
		return err
	}
	pub, _ := user.PublicKey()
	seed, _ = user.Seed()
	uc := jwt.NewUserClaims(pub)
	uc.Name = string(role)
	uc.Permissions = want
	token, err := uc.Encode(acc)
	if err != nil {
		return fmt.Errorf("%s credentials: %w", role, err)
	}
	creds, err := jwt.FormatUserConfig(token, seed)
	if err != nil {
		return fmt.Errorf("%s credentials: %w", role, err)
	}
	return writeFileAtomic(path, creds)
}

// writeFileAtomic replaces path with data, readable by its owner only, so a reader never
// sees half a file and a crash never leaves one.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// adoptAnonymousStore moves the JetStream data of an embedded server that ran without
// authentication (the global account, "$G") to the REVOCAST account, so an upgrade keeps
// every revocation and bucket. It reports whether it moved anything.
func adoptAnonymousStore(storeDir, account string) (bool, error) {
	base := filepath.Join(storeDir, server.JetStreamStoreDir)
	old, dst := filepath.Join(base, server.DEFAULT_GLOBAL_ACCOUNT), filepath.Join(base, account)
	if _, err := os.Stat(old); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if _, err := os.Stat(dst); err == nil {
		return false, nil // already adopted, or both exist: leave them for an operator to look at
	}
	if err := os.Rename(old, dst); err != nil {
		return false, fmt.Errorf("move the JetStream data of the unauthenticated embedded server to the revocast account: %w", err)
	}
	return true, nil
}

// DefaultDataDir is the embedded default's data directory, relative to where revocastd runs.
const DefaultDataDir = "revocast-data"

// DefaultCredentials is the credentials file a tool of role uses to reach natsURL:
// NATS_CREDS when set; otherwise the role's file in the embedded default's data directory
// (REVOCAST_DATA_DIR, default [DefaultDataDir]) when that file exists or when natsURL is the
// embedded default's ([DefaultURL]); otherwise none. So the CLI and resource servers on the
// revocastd machine need no configuration.
func DefaultCredentials(getenv func(string) string, natsURL string, role Role) string {
	if c := getenv("NATS_CREDS"); c != "" {
		return c
	}
	dataDir := getenv("REVOCAST_DATA_DIR")
	if dataDir == "" {
		dataDir = DefaultDataDir
	}
	path := CredentialsFile(dataDir, role)
	if _, err := os.Stat(path); err == nil || natsURL == "" || natsURL == DefaultURL {
		return path
	}
	return ""
}

// WaitForCredentials returns once the credentials file at path exists, or with ctx's error:
// a resource server started before revocastd's first start waits for the file instead of
// failing. waiting is called once if it has to wait.
func WaitForCredentials(ctx context.Context, path string, waiting func()) error {
	if path == "" {
		return nil
	}
	for i := 0; ; i++ {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if i == 0 && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no credentials file %s: %w", path, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
