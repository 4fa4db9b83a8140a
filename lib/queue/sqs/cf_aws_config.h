/*
 * Internal: AWS configuration and credentials, found the way AWS SDKs
 * find them.
 *
 * Region: explicit value, AWS_REGION, AWS_DEFAULT_REGION, the profile's
 * `region` in the config file, else "us-east-1".
 * Endpoints: explicit value, AWS_ENDPOINT_URL_SQS / _SNS,
 * AWS_ENDPOINT_URL, the profile's `endpoint_url`, else
 * https://sqs.REGION.amazonaws.com (sns likewise).
 * Credentials, first that applies:
 *  1. AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN);
 *  2. the shared files: AWS_SHARED_CREDENTIALS_FILE (default
 *     ~/.aws/credentials, section [PROFILE]) then AWS_CONFIG_FILE
 *     (default ~/.aws/config, section [profile PROFILE] or [default]);
 *     profile from AWS_PROFILE, else "default";
 *  3. container credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI or
 *     http://169.254.170.2 + AWS_CONTAINER_CREDENTIALS_RELATIVE_URI,
 *     with AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE) as Authorization;
 *  4. EC2 IMDSv2 (PUT /latest/api/token, then the role's credentials),
 *     unless AWS_EC2_METADATA_DISABLED=true; endpoint overridable with
 *     AWS_EC2_METADATA_SERVICE_ENDPOINT.
 * Fetched credentials are refreshed before they expire (5 minutes
 * ahead, or halfway for short-lived ones). Secrets never appear in
 * error messages.
 */
#ifndef CF_AWS_CONFIG_H
#define CF_AWS_CONFIG_H

#include <chatfanout/cf_common.h>
#include <chatfanout/cf_loop.h>

#include "cf_http.h"

/* Resolved static settings; strings owned by the struct. */
typedef struct cf__aws_config {
  char *region;
  char *endpoint_sqs; /* base URL without trailing slash */
  char *endpoint_sns;
  char *profile;
} cf__aws_config;

/* Overrides given by the application; NULL fields are looked up. */
typedef struct cf__aws_overrides {
  const char *region;
  const char *profile;
  const char *endpoint_sqs;
  const char *endpoint_sns;
} cf__aws_overrides;

/*
 * Resolves region, endpoints and profile from ov, envp (NULL-terminated
 * "K=V"; NULL: environ) and the shared config file. Reads small local
 * files (call at setup, not on a hot path). On error err gets a line.
 * Also honoured: a `services` section's per-service endpoint_url (after
 * the environment, before the profile's endpoint_url) and
 * AWS_IGNORE_CONFIGURED_ENDPOINT_URLS / ignore_configured_endpoint_urls.
 * The config file is read only when a setting has to come from it.
 * CF_OK, CF_ERR_INVALID (bad URL/region/profile name, or an unreadable
 * or malformed config file that was needed), CF_ERR_NOMEM. cfg is
 * zeroed on error; deinit accepts a zeroed cfg.
 */
int cf__aws_config_load(cf__aws_config *cfg, const cf__aws_overrides *ov,
                        char *const *envp, const cf_mem *mem, char *err,
                        size_t errlen);
void cf__aws_config_deinit(cf__aws_config *cfg, const cf_mem *mem);

/* A credential set; strings owned by the provider. */
typedef struct cf__aws_creds {
  const char *access_key_id;
  const char *secret_key;
  const char *session_token; /* NULL when none */
  double expires;            /* epoch seconds; 0: does not expire */
} cf__aws_creds;

typedef struct cf__aws_creds_provider cf__aws_creds_provider;

/* Called when credentials became available or changed (or failed:
 * error != CF_OK, detail in msg). From the loop. */
typedef void (*cf__aws_creds_cb)(int error, const char *msg,
                                 void *user_data);

/*
 * Sets up the chain from envp and the files named there (read now).
 * Static credentials (env, files) are ready at once; container/IMDS ones
 * are fetched through http when cf__aws_creds_start() runs. profile NULL
 * means "default". http may be NULL only when static credentials are
 * found; it must outlive the provider. CF_OK, CF_ERR_INVALID (e.g. key
 * id without secret, a profile that is missing or uses role_arn, sso or
 * credential_process, AWS_WEB_IDENTITY_TOKEN_FILE set, a bad container
 * URI, no source at all), CF_ERR_NOMEM.
 */
int cf__aws_creds_new(cf__aws_creds_provider **out, const char *profile,
                      char *const *envp, cf__http *http,
                      const cf_loop *loop, const cf_mem *mem, char *err,
                      size_t errlen);
/* Cancels any fetch (no callback after), wipes the secrets and frees.
 * Accepts NULL. Safe from inside the callback (deferred to its return). */
void cf__aws_creds_free(cf__aws_creds_provider *p);

/* Begins fetching/refreshing; cb (may be NULL) reports each outcome,
 * never from inside this call (static sources report CF_OK once). A
 * second call only replaces cb and user_data. CF_OK, CF_ERR_INVALID. */
int cf__aws_creds_start(cf__aws_creds_provider *p, cf__aws_creds_cb cb,
                        void *user_data);

/* Current credentials, or NULL when none are available yet (or the last
 * ones expired while refreshing failed). Valid until the next loop
 * iteration. */
const cf__aws_creds *cf__aws_creds_get(const cf__aws_creds_provider *p);

/* Which source supplied them: "env", "file", "container", "imds". */
const char *cf__aws_creds_source(const cf__aws_creds_provider *p);

#endif /* CF_AWS_CONFIG_H */
