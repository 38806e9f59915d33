-- An access token is only as good as its session. Every statement a component runs for an
-- authenticated request calls identity.require_session with the token's `sid` and `sub`,
-- in that same statement (components/common/src/db.rs), so after a logout, a revocation,
-- a password change or a refresh-token reuse, no token of that session reads or moves
-- anything: the statement fails as a whole, writes included, without a round trip more.
--
-- A session is live while it is not revoked and its current refresh token has not
-- expired (the same rule GET /auth/sessions lists by). SQLSTATE 28000
-- (invalid_authorization_specification) tells the component to answer 401 invalid-token.
CREATE FUNCTION identity.require_session(p_session UUID, p_user UUID) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1
    FROM identity.sessions s
    WHERE s.id = p_session AND s.user_id = p_user AND s.revoked_at IS NULL
      AND EXISTS (SELECT 1 FROM identity.refresh_tokens t
                  WHERE t.session_id = s.id AND t.rotated_at IS NULL
                    AND t.expires_at > (now() AT TIME ZONE 'UTC'));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the session of this access token has ended' USING ERRCODE = '28000';
    END IF;
END
$$;
