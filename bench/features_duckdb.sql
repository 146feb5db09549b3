-- The reference for bench/bench_features.py: the churn-spark feature catalogue (windows 7/30/90
-- days, history 180 days) written once by hand in DuckDB SQL, independent of the Spark code.
--
-- Expects, in the connection: views `events` and `users` over the benchmark's Parquet files, a
-- table `snapshots(snapshot_date DATE, t_us BIGINT)` (T = midnight UTC of the date, in epoch
-- microseconds), and the scalar UDF `sentiment(VARCHAR) -> DOUBLE` (churn_spark.sentiment.score_text).
-- Defines the view `features`: one row per (user known at T, T), the catalogue's columns in order.
--
-- Point in time: an event is paired with T when T - 180 days <= event_time < T; `d` is
-- (T - event_time) in days (fractional, > 0), and "in the w days before T" is d <= w. Every pair
-- is therefore inside the 180-day history, so the history-wide features need no extra filter.

CREATE OR REPLACE MACRO safe_div(n, d) AS CASE WHEN d > 0 THEN n / d ELSE 0.0 END;
CREATE OR REPLACE MACRO relative_change(recent, before) AS safe_div(recent - before, recent + before);

CREATE OR REPLACE VIEW features AS
WITH ev AS (
  SELECT user_id, epoch_us(event_time) AS us, event_type, session_id, product_id, category, channel,
         price * coalesce(quantity, 1) AS amount, coalesce(quantity, 1) AS qty, dwell_seconds, rating,
         CASE WHEN event_type = 'review' THEN sentiment(review_text) END AS sentiment
  FROM events
),
paired AS (
  SELECT e.*, t.snapshot_date, (t.t_us - e.us) / 86400000000 AS d, e.us // 86400000000 AS day
  FROM ev e JOIN snapshots t ON e.us >= t.t_us - 180 * 86400000000 AND e.us < t.t_us
),
agg AS (
  SELECT user_id, snapshot_date,
    -- recency
    min(d) FILTER (event_type = 'view') AS last_view,
    min(d) FILTER (event_type = 'cart') AS last_cart,
    min(d) FILTER (event_type = 'purchase') AS last_purchase,
    min(d) FILTER (event_type = 'review') AS last_review,
    min(d) FILTER (event_type = 'service') AS last_service,
    max(d) AS first_event,
    -- frequency
    count(DISTINCT session_id) FILTER (d <= 7) AS sessions_7d,
    count(*) FILTER (event_type = 'view' AND d <= 7) AS views_7d,
    count(*) FILTER (event_type = 'cart' AND d <= 7) AS carts_7d,
    count(*) FILTER (event_type = 'purchase' AND d <= 7) AS purchases_7d,
    count(DISTINCT day) FILTER (d <= 7) AS active_days_7d,
    count(DISTINCT session_id) FILTER (d <= 30) AS sessions_30d,
    count(*) FILTER (event_type = 'view' AND d <= 30) AS views_30d,
    count(*) FILTER (event_type = 'cart' AND d <= 30) AS carts_30d,
    count(*) FILTER (event_type = 'purchase' AND d <= 30) AS purchases_30d,
    count(DISTINCT day) FILTER (d <= 30) AS active_days_30d,
    count(DISTINCT session_id) FILTER (d <= 90) AS sessions_90d,
    count(*) FILTER (event_type = 'view' AND d <= 90) AS views_90d,
    count(*) FILTER (event_type = 'cart' AND d <= 90) AS carts_90d,
    count(*) FILTER (event_type = 'purchase' AND d <= 90) AS purchases_90d,
    count(DISTINCT day) FILTER (d <= 90) AS active_days_90d,
    -- monetary
    sum(amount) FILTER (event_type = 'purchase' AND d <= 30) AS spend_30d,
    sum(qty) FILTER (event_type = 'purchase' AND d <= 30) AS items_30d,
    count(*) FILTER (event_type = 'refund' AND d <= 30) AS refunds_30d,
    sum(amount) FILTER (event_type = 'refund' AND d <= 30) AS refund_amount_30d,
    sum(amount) FILTER (event_type = 'purchase' AND d <= 90) AS spend_90d,
    sum(qty) FILTER (event_type = 'purchase' AND d <= 90) AS items_90d,
    count(*) FILTER (event_type = 'refund' AND d <= 90) AS refunds_90d,
    sum(amount) FILTER (event_type = 'refund' AND d <= 90) AS refund_amount_90d,
    -- browsing
    sum(dwell_seconds) FILTER (event_type = 'view' AND d <= 7) AS dwell_total_7d,
    avg(dwell_seconds) FILTER (event_type = 'view' AND d <= 7) AS dwell_mean_7d,
    sum(dwell_seconds) FILTER (event_type = 'view' AND d <= 30) AS dwell_total_30d,
    avg(dwell_seconds) FILTER (event_type = 'view' AND d <= 30) AS dwell_mean_30d,
    sum(dwell_seconds) FILTER (event_type = 'view' AND d <= 90) AS dwell_total_90d,
    avg(dwell_seconds) FILTER (event_type = 'view' AND d <= 90) AS dwell_mean_90d,
    -- funnel: the sessions with a cart, and those with a purchase
    list(DISTINCT session_id) FILTER (event_type = 'cart' AND d <= 30 AND session_id IS NOT NULL) AS cart_sessions_30d,
    list(DISTINCT session_id) FILTER (event_type = 'purchase' AND d <= 30 AND session_id IS NOT NULL) AS paid_sessions_30d,
    list(DISTINCT session_id) FILTER (event_type = 'cart' AND d <= 90 AND session_id IS NOT NULL) AS cart_sessions_90d,
    list(DISTINCT session_id) FILTER (event_type = 'purchase' AND d <= 90 AND session_id IS NOT NULL) AS paid_sessions_90d,
    -- breadth
    count(DISTINCT category) FILTER (event_type IN ('view', 'cart', 'purchase') AND d <= 30) AS distinct_categories_30d,
    count(DISTINCT product_id) FILTER (event_type IN ('view', 'cart', 'purchase') AND d <= 30) AS distinct_products_30d,
    count(DISTINCT category) FILTER (event_type IN ('view', 'cart', 'purchase') AND d <= 90) AS distinct_categories_90d,
    count(DISTINCT product_id) FILTER (event_type IN ('view', 'cart', 'purchase') AND d <= 90) AS distinct_products_90d,
    -- loyalty (whole history)
    count(*) FILTER (event_type = 'purchase') AS purchases_all,
    count(DISTINCT product_id) FILTER (event_type = 'purchase') AS products_bought,
    list(DISTINCT day) FILTER (event_type = 'purchase') AS purchase_days,
    -- trends: the 30 days before the last 30
    count(DISTINCT session_id) FILTER (d > 30 AND d <= 60) AS sessions_prev_30d,
    count(*) FILTER (event_type = 'purchase' AND d > 30 AND d <= 60) AS purchases_prev_30d,
    sum(amount) FILTER (event_type = 'purchase' AND d > 30 AND d <= 60) AS spend_prev_30d,
    -- reviews
    count(*) FILTER (event_type = 'review' AND d <= 90) AS reviews_90d,
    avg(rating) FILTER (event_type = 'review' AND d <= 90) AS rating_mean_90d,
    count(*) FILTER (event_type = 'review' AND d <= 90 AND rating <= 2) AS low_ratings_90d,
    avg(sentiment) FILTER (event_type = 'review' AND d <= 90) AS sentiment_mean_90d,
    -- service
    count(*) FILTER (event_type = 'service' AND d <= 30) AS service_contacts_30d,
    count(*) FILTER (event_type = 'service' AND d <= 90) AS service_contacts_90d,
    -- channel mix
    count(*) FILTER (d <= 90) AS events_90d,
    count(*) FILTER (d <= 90 AND channel = 'app') AS app_90d,
    count(*) FILTER (d <= 90 AND channel = 'web') AS web_90d,
    count(*) FILTER (d <= 90 AND channel = 'mini_program') AS mini_program_90d,
    count(*) FILTER (d <= 90 AND (channel IS NULL OR channel NOT IN ('app', 'web', 'mini_program'))) AS other_90d
  FROM paired
  GROUP BY user_id, snapshot_date
),
-- A service contact is unresolved when the user's next purchase strictly after it (over all the
-- user's events) is not within 7 days; only contacts at least 7 days before T are judged.
contacts AS (
  SELECT s.user_id, s.us, coalesce(p.us < s.us + 7 * 86400000000, false) AS resolved
  FROM (SELECT user_id, epoch_us(event_time) AS us FROM events WHERE event_type = 'service') s
  ASOF LEFT JOIN (SELECT user_id, epoch_us(event_time) AS us FROM events WHERE event_type = 'purchase') p
    ON s.user_id = p.user_id AND p.us > s.us
),
unresolved AS (
  SELECT user_id, snapshot_date,
    count(*) FILTER (d >= 7 AND d <= 30 AND NOT resolved) AS service_unresolved_30d,
    count(*) FILTER (d >= 7 AND d <= 90 AND NOT resolved) AS service_unresolved_90d
  FROM (SELECT c.user_id, c.resolved, t.snapshot_date, (t.t_us - c.us) / 86400000000 AS d
        FROM contacts c JOIN snapshots t ON c.us >= t.t_us - 180 * 86400000000 AND c.us < t.t_us)
  GROUP BY user_id, snapshot_date
),
-- Users known at T: signed up before T, or with an event in the history before T.
known AS (
  SELECT *
  FROM (SELECT u.user_id, t.snapshot_date, t.t_us AS profile_t_us, u.signup_time, u.gender, u.age,
               u.region, u.membership_level
        FROM users u CROSS JOIN snapshots t) p
  FULL JOIN agg USING (user_id, snapshot_date)
  LEFT JOIN unresolved USING (user_id, snapshot_date)
  WHERE epoch_us(signup_time) < profile_t_us OR first_event IS NOT NULL
),
ordered AS (
  SELECT *, list_sort(purchase_days) AS pdays FROM known
),
-- Days between consecutive distinct purchase days, oldest first (none for fewer than two).
shaped AS (
  SELECT *, CASE WHEN len(pdays) >= 2 THEN
              list_transform(range(1, len(pdays)), lambda i: CAST(pdays[i + 1] - pdays[i] AS DOUBLE))
            END AS gaps
  FROM ordered
)
SELECT
  user_id, snapshot_date,
  coalesce(last_view, 180)::DOUBLE AS days_since_last_view,
  (last_view IS NOT NULL)::INTEGER AS view_seen,
  coalesce(last_cart, 180)::DOUBLE AS days_since_last_cart,
  (last_cart IS NOT NULL)::INTEGER AS cart_seen,
  coalesce(last_purchase, 180)::DOUBLE AS days_since_last_purchase,
  (last_purchase IS NOT NULL)::INTEGER AS purchase_seen,
  coalesce(last_review, 180)::DOUBLE AS days_since_last_review,
  (last_review IS NOT NULL)::INTEGER AS review_seen,
  coalesce(last_service, 180)::DOUBLE AS days_since_last_service,
  (last_service IS NOT NULL)::INTEGER AS service_seen,
  coalesce(first_event, 0)::DOUBLE AS days_since_first_event,
  coalesce(sessions_7d, 0)::INTEGER AS sessions_7d,
  coalesce(views_7d, 0)::INTEGER AS views_7d,
  coalesce(carts_7d, 0)::INTEGER AS carts_7d,
  coalesce(purchases_7d, 0)::INTEGER AS purchases_7d,
  coalesce(active_days_7d, 0)::INTEGER AS active_days_7d,
  coalesce(sessions_30d, 0)::INTEGER AS sessions_30d,
  coalesce(views_30d, 0)::INTEGER AS views_30d,
  coalesce(carts_30d, 0)::INTEGER AS carts_30d,
  coalesce(purchases_30d, 0)::INTEGER AS purchases_30d,
  coalesce(active_days_30d, 0)::INTEGER AS active_days_30d,
  coalesce(sessions_90d, 0)::INTEGER AS sessions_90d,
  coalesce(views_90d, 0)::INTEGER AS views_90d,
  coalesce(carts_90d, 0)::INTEGER AS carts_90d,
  coalesce(purchases_90d, 0)::INTEGER AS purchases_90d,
  coalesce(active_days_90d, 0)::INTEGER AS active_days_90d,
  coalesce(spend_30d, 0)::DOUBLE AS spend_30d,
  coalesce(items_30d, 0)::INTEGER AS items_30d,
  coalesce(safe_div(spend_30d, purchases_30d), 0)::DOUBLE AS avg_order_value_30d,
  coalesce(refunds_30d, 0)::INTEGER AS refunds_30d,
  coalesce(refund_amount_30d, 0)::DOUBLE AS refund_amount_30d,
  coalesce(safe_div(coalesce(refund_amount_30d, 0), spend_30d), 0)::DOUBLE AS refund_share_30d,
  coalesce(spend_90d, 0)::DOUBLE AS spend_90d,
  coalesce(items_90d, 0)::INTEGER AS items_90d,
  coalesce(safe_div(spend_90d, purchases_90d), 0)::DOUBLE AS avg_order_value_90d,
  coalesce(refunds_90d, 0)::INTEGER AS refunds_90d,
  coalesce(refund_amount_90d, 0)::DOUBLE AS refund_amount_90d,
  coalesce(safe_div(coalesce(refund_amount_90d, 0), spend_90d), 0)::DOUBLE AS refund_share_90d,
  coalesce(dwell_total_7d, 0)::DOUBLE AS dwell_total_7d,
  coalesce(dwell_mean_7d, 0)::DOUBLE AS dwell_mean_7d,
  coalesce(safe_div(views_7d, sessions_7d), 0)::DOUBLE AS views_per_session_7d,
  coalesce(dwell_total_30d, 0)::DOUBLE AS dwell_total_30d,
  coalesce(dwell_mean_30d, 0)::DOUBLE AS dwell_mean_30d,
  coalesce(safe_div(views_30d, sessions_30d), 0)::DOUBLE AS views_per_session_30d,
  coalesce(dwell_total_90d, 0)::DOUBLE AS dwell_total_90d,
  coalesce(dwell_mean_90d, 0)::DOUBLE AS dwell_mean_90d,
  coalesce(safe_div(views_90d, sessions_90d), 0)::DOUBLE AS views_per_session_90d,
  coalesce(safe_div(purchases_30d, carts_30d), 0)::DOUBLE AS cart_conversion_30d,
  coalesce(safe_div(len(list_filter(cart_sessions_30d, lambda s: NOT list_contains(coalesce(paid_sessions_30d, []), s))),
                    len(cart_sessions_30d)), 0)::DOUBLE AS cart_abandonment_30d,
  coalesce(safe_div(purchases_90d, carts_90d), 0)::DOUBLE AS cart_conversion_90d,
  coalesce(safe_div(len(list_filter(cart_sessions_90d, lambda s: NOT list_contains(coalesce(paid_sessions_90d, []), s))),
                    len(cart_sessions_90d)), 0)::DOUBLE AS cart_abandonment_90d,
  coalesce(distinct_categories_30d, 0)::INTEGER AS distinct_categories_30d,
  coalesce(distinct_products_30d, 0)::INTEGER AS distinct_products_30d,
  coalesce(distinct_categories_90d, 0)::INTEGER AS distinct_categories_90d,
  coalesce(distinct_products_90d, 0)::INTEGER AS distinct_products_90d,
  coalesce(safe_div(purchases_all - products_bought, purchases_all), 0)::DOUBLE AS repurchase_rate,
  coalesce(list_avg(gaps), 0)::DOUBLE AS purchase_gap_mean_days,
  coalesce(list_aggregate(gaps, 'stddev_pop'), 0)::DOUBLE AS purchase_gap_std_days,
  coalesce(safe_div(last_purchase, list_avg(gaps)), 0)::DOUBLE AS overdue_ratio,
  coalesce(relative_change(coalesce(sessions_30d, 0), coalesce(sessions_prev_30d, 0)), 0)::DOUBLE AS sessions_trend_30d,
  coalesce(relative_change(coalesce(purchases_30d, 0), coalesce(purchases_prev_30d, 0)), 0)::DOUBLE AS purchases_trend_30d,
  coalesce(relative_change(coalesce(spend_30d, 0), coalesce(spend_prev_30d, 0)), 0)::DOUBLE AS spend_trend_30d,
  coalesce(reviews_90d, 0)::INTEGER AS reviews_90d,
  coalesce(rating_mean_90d, 0)::DOUBLE AS rating_mean_90d,
  coalesce(safe_div(low_ratings_90d, reviews_90d), 0)::DOUBLE AS low_rating_share_90d,
  coalesce(sentiment_mean_90d, 0)::DOUBLE AS sentiment_mean_90d,
  coalesce(service_contacts_30d, 0)::INTEGER AS service_contacts_30d,
  coalesce(service_unresolved_30d, 0)::INTEGER AS service_unresolved_30d,
  coalesce(service_contacts_90d, 0)::INTEGER AS service_contacts_90d,
  coalesce(service_unresolved_90d, 0)::INTEGER AS service_unresolved_90d,
  coalesce(safe_div(app_90d, events_90d), 0)::DOUBLE AS channel_share_app_90d,
  coalesce(safe_div(web_90d, events_90d), 0)::DOUBLE AS channel_share_web_90d,
  coalesce(safe_div(mini_program_90d, events_90d), 0)::DOUBLE AS channel_share_mini_program_90d,
  coalesce(safe_div(other_90d, events_90d), 0)::DOUBLE AS channel_share_other_90d,
  CASE WHEN signup_time IS NOT NULL
       THEN (epoch_us(CAST(snapshot_date AS TIMESTAMP)) - epoch_us(signup_time)) / 86400000000
       ELSE coalesce(first_event, 0) END::DOUBLE AS tenure_days,
  (signup_time IS NOT NULL)::INTEGER AS signup_known,
  CASE WHEN age IS NULL THEN 'unknown' WHEN age < 25 THEN '<25' WHEN age < 35 THEN '25-34'
       WHEN age < 45 THEN '35-44' WHEN age < 55 THEN '45-54' ELSE '55+' END AS age_band,
  coalesce(gender, 'unknown') AS gender,
  coalesce(region, 'unknown') AS region,
  coalesce(membership_level, 'unknown') AS membership_level
FROM shaped;
