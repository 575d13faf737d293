/*
 * Unit tests for xmpp/proto (stanzas): every relevant fixture captured
 * from real peers in shared/fixtures/stanzas is parsed and its fields
 * checked; every builder is round-tripped through text; hostile variants
 * of each stanza must fail with the documented errno, never crash.
 * Bytes-only parts (base64, names, SOCKS5) are in test_proto_bytes.c.
 *
 * Exit 0 = pass, 1 = failure, 77 = fixtures missing (the rest passed).
 */
#include "xmpp/proto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"

static xmpp_ctx_t *ctx;
static char fixdir[1024];

/* ---- helpers ------------------------------------------------------- */

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 &&
	    fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		} else if (buf) {
			buf[n] = '\0';
		}
	}
	fclose(f);
	return buf;
}

/* Parse a fixture file into a stanza; a missing or bad file is a test
 * failure (the fixture set is part of the repo contract). */
static xmpp_stanza_t *fixture(const char *rel)
{
	char path[2048];
	char *text;
	xmpp_stanza_t *st;

	snprintf(path, sizeof(path), "%s/%s", fixdir, rel);
	text = read_file(path);
	if (!text) {
		fprintf(stderr, "cannot read fixture %s\n", path);
		failures++;
		return NULL;
	}
	st = xmpp_stanza_new_from_string(ctx, text);
	free(text);
	if (!st) {
		fprintf(stderr, "fixture %s does not parse\n", path);
		failures++;
	}
	return st;
}

static xmpp_stanza_t *from_string(const char *s)
{
	xmpp_stanza_t *st = xmpp_stanza_new_from_string(ctx, s);

	if (!st) {
		fprintf(stderr, "test XML does not parse: %s\n", s);
		failures++;
	}
	return st;
}

/* Serialise and re-parse: what a peer would receive. Releases st. */
static xmpp_stanza_t *round_trip(xmpp_stanza_t *st)
{
	char *buf = NULL;
	size_t len = 0;
	xmpp_stanza_t *back;

	if (!st) {
		fprintf(stderr, "builder returned NULL\n");
		failures++;
		return NULL;
	}
	if (xmpp_stanza_to_text(st, &buf, &len) != XMPP_EOK) {
		fprintf(stderr, "xmpp_stanza_to_text failed\n");
		failures++;
		xmpp_stanza_release(st);
		return NULL;
	}
	xmpp_stanza_release(st);
	back = xmpp_stanza_new_from_string(ctx, buf);
	if (!back) {
		fprintf(stderr, "built stanza does not re-parse: %s\n", buf);
		failures++;
	}
	xmpp_free(ctx, buf);
	return back;
}

static void release(xmpp_stanza_t *st)
{
	if (st)
		xmpp_stanza_release(st);
}

static int offer_rc(const char *xml, struct proto_offer *o)
{
	xmpp_stanza_t *st = from_string(xml);
	int rc = st ? proto_parse_offer(st, o) : -999;

	release(st);
	return rc;
}

/* ---- XEP-0095/0096 offers ----------------------------------------- */

static void test_offer_fixtures(void)
{
	struct proto_offer o;
	xmpp_stanza_t *st;

	st = fixture("libpurple/si-offer.xml");
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("purple3c0350b6", o.id);
		CHECK_STR("", o.from);
		CHECK_STR("purple3c0350b7", o.sid);
		CHECK_STR("f20k.bin", o.raw_name);
		CHECK_INT(20000, o.size);
		CHECK_INT(1, o.has_size);
		CHECK_STR("", o.hash);
		CHECK_STR("", o.date);
		CHECK_STR("", o.mime);
		CHECK_STR("", o.desc);
		CHECK_INT(0, o.range);
		CHECK_INT(PROTO_M_S5B | PROTO_M_IBB, o.methods);
		CHECK_INT(2, o.norder);
		CHECK_INT(PROTO_M_S5B, o.order[0]);
		CHECK_INT(PROTO_M_IBB, o.order[1]);
		release(st);
	}
	st = fixture("prosody/forwarded-si-offer-from-libpurple.xml");
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("purpleb622f7e3", o.id);
		CHECK_STR("alice@localhost/purple", o.from);
		CHECK_STR("purpleb622f7e4", o.sid);
		CHECK_STR("f20k.bin", o.raw_name);
		CHECK_INT(20000, o.size);
		CHECK_INT(PROTO_M_S5B, o.order[0]);
		release(st);
	}
	st = fixture("qxmpp/si-offer.xml");
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("qxmpp9", o.id);
		CHECK_STR("95a12734-d2de-4908-80bb-90f8c8672527", o.sid);
		CHECK_STR("4f3dbf121708cd012fe00d1ead0abcac", o.hash);
		CHECK_STR("2026-11-25T15:55:08.250Z", o.date);
		CHECK_STR("", o.mime);
		CHECK_INT(20000, o.size);
		CHECK_INT(PROTO_M_S5B | PROTO_M_IBB, o.methods);
		CHECK_INT(2, o.norder);
		CHECK_INT(PROTO_M_IBB, o.order[0]); /* QXmpp lists ibb first */
		CHECK_INT(PROTO_M_S5B, o.order[1]);
		release(st);
	}
	st = fixture("qxmpp/si-offer-ibb-only.xml");
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("1c43885a-b6ff-4a56-b706-c7004128e427", o.sid);
		CHECK_INT(PROTO_M_IBB, o.methods);
		CHECK_INT(1, o.norder);
		CHECK_INT(PROTO_M_IBB, o.order[0]);
		release(st);
	}
	st = fixture("slixmpp-peer/si-offer.xml");
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("b4ed6113ed524b47929c1a9cd5aac005", o.id);
		CHECK_STR("s3d4dd2619e3643419c2a1b9ca71ddec9", o.sid);
		CHECK_STR("application/octet-stream", o.mime);
		CHECK_STR("4f3dbf121708cd012fe00d1ead0abcac", o.hash);
		CHECK_STR("2026-11-25T15:55:08Z", o.date);
		CHECK_INT(PROTO_M_S5B, o.order[0]);
		CHECK_INT(PROTO_M_IBB, o.order[1]);
		release(st);
	}
	/* Spark: pretty-printed, <file/> after <feature/>, <desc/>. */
	st = fixture("spark/si-offer.xml");
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("iq_13", o.id);
		CHECK_STR("iphone@192.168.1.113/xiff", o.from);
		CHECK_STR("82B0C697-C1DE-93F9-103E-481C8E7A3BD8", o.sid);
		CHECK_STR("text/plain", o.mime);
		CHECK_STR("img0545.png", o.raw_name);
		CHECK_INT(152443, o.size);
		CHECK_STR("send", o.desc);
		CHECK_STR("", o.hash);
		CHECK_INT(2, o.norder);
		CHECK_INT(PROTO_M_S5B, o.order[0]);
		release(st);
	}
}

#define OFFER_HEAD                                                           \
	"<iq type='set' id='i1' from='a@b/c'><si xmlns='" NS_SI              \
	"' id='s1' profile='" NS_SI_FT "'>"
#define OFFER_FEAT                                                           \
	"<feature xmlns='" NS_FEATURE_NEG "'><x xmlns='" NS_DATA             \
	"' type='form'><field var='stream-method' type='list-single'>"       \
	"<option><value>" NS_BYTESTREAMS "</value></option>"                 \
	"</field></x></feature></si></iq>"
#define OFFER_FILE(attrs)                                                    \
	OFFER_HEAD "<file xmlns='" NS_SI_FT "' " attrs "/>" OFFER_FEAT

static void test_offer_hostile(void)
{
	struct proto_offer o;
	char big[2048];

	CHECK_INT(0, offer_rc(OFFER_FILE("name='x' size='5'"), &o));
	CHECK_INT(5, o.size);
	/* QXmpp omits size for 0-byte files. */
	CHECK_INT(0, offer_rc(OFFER_FILE("name='x'"), &o));
	CHECK_INT(0, o.has_size);
	CHECK_INT(0, o.size);
	CHECK_INT(0, offer_rc(OFFER_FILE("name='x' size='0'"), &o));
	CHECK_INT(1, o.has_size);
	CHECK_INT(0, offer_rc(
			     OFFER_FILE("name='x' size='18446744073709551615'"),
			     &o));
	CHECK(o.size == UINT64_MAX);
	CHECK_INT(-EBADMSG,
		  offer_rc(OFFER_FILE("name='x' size='18446744073709551616'"),
			   &o));
	CHECK_INT(-EBADMSG,
		  offer_rc(OFFER_FILE("name='x' size='99999999999999999999999'"),
			   &o));
	CHECK_INT(-EBADMSG,
		  offer_rc(OFFER_FILE("name='x' size='9999999999999999999999999"
				      "9999999999999999999999999999999'"),
			   &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("name='x' size='-1'"), &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("name='x' size=''"), &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("name='x' size=' 5'"), &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("name='x' size='+5'"), &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("name='x' size='5k'"), &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("name='x' size='0x10'"), &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_FILE("size='5'"), &o));
	/* hash: 32 hex digits or dropped; upper case is lowered. */
	CHECK_INT(0, offer_rc(OFFER_FILE("name='x' hash='4F3DBF121708CD012FE00"
					 "D1EAD0ABCAC'"),
			      &o));
	CHECK_STR("4f3dbf121708cd012fe00d1ead0abcac", o.hash);
	CHECK_INT(0, offer_rc(OFFER_FILE("name='x' hash='zz'"), &o));
	CHECK_STR("", o.hash);
	CHECK_INT(0, offer_rc(OFFER_FILE("name='x' hash='4f3dbf121708cd012fe00"
					 "d1ead0abcacff'"),
			      &o));
	CHECK_STR("", o.hash);
	CHECK_INT(0, offer_rc(OFFER_FILE("name='x' hash='4f3dbf121708cd012fe00"
					 "d1ead0abcaX'"),
			      &o));
	CHECK_STR("", o.hash);
	/* Unsafe names are kept raw here; the sanitizer deals with them. */
	CHECK_INT(0, offer_rc(OFFER_FILE("name='../../etc/passwd'"), &o));
	CHECK_STR("../../etc/passwd", o.raw_name);
	/* Other profile, missing pieces. */
	CHECK_INT(-ENOTSUP,
		  offer_rc("<iq type='set' id='i'><si xmlns='" NS_SI
			   "' id='s' profile='urn:other'/></iq>",
			   &o));
	CHECK_INT(-EBADMSG, offer_rc("<iq type='set' id='i'><si xmlns='" NS_SI
				     "' id='s'/></iq>",
				     &o));
	CHECK_INT(-EBADMSG,
		  offer_rc("<iq type='set' id='i'><si xmlns='" NS_SI
			   "' profile='" NS_SI_FT "'><file xmlns='" NS_SI_FT
			   "' name='x'/>" OFFER_FEAT,
			   &o));
	CHECK_INT(-EBADMSG,
		  offer_rc("<iq type='set' id='i'><si xmlns='" NS_SI
			   "' id='' profile='" NS_SI_FT "'><file xmlns='" NS_SI_FT
			   "' name='x'/>" OFFER_FEAT,
			   &o));
	CHECK_INT(-EBADMSG, offer_rc(OFFER_HEAD OFFER_FEAT, &o));
	CHECK_INT(-EBADMSG,
		  offer_rc(OFFER_HEAD "<file xmlns='" NS_SI_FT
				      "' name='x'/></si></iq>",
			   &o));
	/* wrong namespace on <file/> */
	CHECK_INT(-EBADMSG,
		  offer_rc(OFFER_HEAD "<file xmlns='urn:x' name='x'/>" OFFER_FEAT,
			   &o));
	CHECK_INT(-EBADMSG, offer_rc("<iq type='set' id='i'/>", &o));
	CHECK_INT(-EBADMSG, offer_rc("<message id='i'/>", &o));
	/* not a set, no id */
	CHECK_INT(-EBADMSG,
		  offer_rc("<iq type='get' id='i1'><si xmlns='" NS_SI "' id='s1' "
			   "profile='" NS_SI_FT "'><file xmlns='" NS_SI_FT
			   "' name='x'/>" OFFER_FEAT,
			   &o));
	CHECK_INT(-EBADMSG,
		  offer_rc("<iq type='set'><si xmlns='" NS_SI "' id='s1' "
			   "profile='" NS_SI_FT "'><file xmlns='" NS_SI_FT
			   "' name='x'/>" OFFER_FEAT,
			   &o));
	/* Only unknown methods: parsed, methods == 0 (400 no-valid-streams),
	 * and repeated methods count once. */
	CHECK_INT(0,
		  offer_rc(OFFER_HEAD "<file xmlns='" NS_SI_FT "' name='x'/>"
				      "<feature xmlns='" NS_FEATURE_NEG
				      "'><x xmlns='" NS_DATA
				      "' type='form'><field var='stream-method'>"
				      "<option><value>urn:x</value></option>"
				      "<option><value/></option><option/>"
				      "</field></x></feature></si></iq>",
			   &o));
	CHECK_INT(0, o.methods);
	CHECK_INT(0, o.norder);
	CHECK_INT(0,
		  offer_rc(OFFER_HEAD "<file xmlns='" NS_SI_FT "' name='x'/>"
				      "<feature xmlns='" NS_FEATURE_NEG
				      "'><x xmlns='" NS_DATA
				      "' type='form'><field var='stream-method'>"
				      "<option><value>" NS_IBB "</value></option>"
				      "<option><value>" NS_IBB "</value></option>"
				      "<option><value> " NS_BYTESTREAMS
				      "\n</value></option>"
				      "</field></x></feature></si></iq>",
			   &o));
	CHECK_INT(PROTO_M_S5B | PROTO_M_IBB, o.methods);
	CHECK_INT(2, o.norder);
	CHECK_INT(PROTO_M_IBB, o.order[0]);
	CHECK_INT(PROTO_M_S5B, o.order[1]);
	/* Fields that do not fit are -E2BIG, never cut. */
	memset(big, 'a', 300);
	big[300] = '\0';
	{
		char xml[4096];

		snprintf(xml, sizeof(xml),
			 "<iq type='set' id='i'><si xmlns='" NS_SI "' id='%s' "
			 "profile='" NS_SI_FT "'><file xmlns='" NS_SI_FT
			 "' name='x'/>" OFFER_FEAT,
			 big);
		CHECK_INT(-E2BIG, offer_rc(xml, &o));
		/* An over-long date is dropped, not fatal: it is advisory. */
		snprintf(xml, sizeof(xml), OFFER_FILE("name='x' date='%s'"),
			 big);
		CHECK_INT(0, offer_rc(xml, &o));
		CHECK_STR("", o.date);
		snprintf(xml, sizeof(xml),
			 "<iq type='set' id='%s'><si xmlns='" NS_SI "' id='s' "
			 "profile='" NS_SI_FT "'><file xmlns='" NS_SI_FT
			 "' name='x'/>" OFFER_FEAT,
			 big);
		CHECK_INT(-E2BIG, offer_rc(xml, &o));
		/* an over-long name keeps its tail (the basename end) */
		memset(big, 'n', 1100);
		memcpy(big + 1092, "end.txt", 8);
		snprintf(xml, sizeof(xml), OFFER_FILE("name='%s'"), big);
		CHECK_INT(0, offer_rc(xml, &o));
		CHECK_INT(1023, (long)strlen(o.raw_name));
		CHECK_STR("end.txt", o.raw_name + 1016);
		big[1092] = 'n';
		big[1100] = '\0';
		/* a name of exactly 1023 bytes fits */
		big[1023] = '\0';
		snprintf(xml, sizeof(xml), OFFER_FILE("name='%s'"), big);
		CHECK_INT(0, offer_rc(xml, &o));
		CHECK_INT(1023, strlen(o.raw_name));
	}
	/* <range/> and xml:lang, double quotes */
	CHECK_INT(0,
		  offer_rc("<iq xml:lang=\"en\" type=\"set\" id=\"i1\"><si xmlns=\"" NS_SI
			   "\" id=\"s1\" profile=\"" NS_SI_FT "\"><file xmlns=\""
			   NS_SI_FT "\" name=\"x\" size=\"9\"><range/></file>"
			   OFFER_FEAT,
			   &o));
	CHECK_INT(1, o.range);
}

static void test_offer_roundtrip(void)
{
	static const enum proto_method both[] = {PROTO_M_IBB, PROTO_M_S5B};
	static const enum proto_method one[] = {PROTO_M_S5B, PROTO_M_NONE};
	struct proto_offer_args a = {
		.id = "o1",
		.to = "bob@localhost/peer",
		.sid = "sid-1",
		.name = "r\xc3\xa9sum\xc3\xa9 & <co>.pdf",
		.hash = "4f3dbf121708cd012fe00d1ead0abcac",
		.date = "2026-01-02T03:04:05Z",
		.mime = "application/pdf",
		.size = 12345678901ULL,
		.range = 1,
		.methods = both,
		.nmethods = 2,
	};
	struct proto_offer o;
	xmpp_stanza_t *st;

	st = round_trip(proto_build_offer(ctx, &a));
	if (st) {
		CHECK_STR("set", xmpp_stanza_get_type(st));
		CHECK_STR("bob@localhost/peer", xmpp_stanza_get_to(st));
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_STR("o1", o.id);
		CHECK_STR("sid-1", o.sid);
		CHECK_STR(a.name, o.raw_name);
		CHECK_STR(a.hash, o.hash);
		CHECK_STR(a.date, o.date);
		CHECK_STR(a.mime, o.mime);
		CHECK(o.size == 12345678901ULL);
		CHECK_INT(1, o.has_size);
		CHECK_INT(1, o.range);
		CHECK_INT(2, o.norder);
		CHECK_INT(PROTO_M_IBB, o.order[0]);
		CHECK_INT(PROTO_M_S5B, o.order[1]);
		release(st);
	}
	/* Minimal: no hash/date/mime, size 0 still sent, NONE skipped. */
	a.hash = a.date = a.mime = NULL;
	a.size = 0;
	a.range = 0;
	a.methods = one;
	st = round_trip(proto_build_offer(ctx, &a));
	if (st) {
		CHECK_INT(0, proto_parse_offer(st, &o));
		CHECK_INT(1, o.has_size);
		CHECK_INT(0, o.size);
		CHECK_STR("", o.hash);
		CHECK_STR("", o.mime);
		CHECK_INT(0, o.range);
		CHECK_INT(1, o.norder);
		CHECK_INT(PROTO_M_S5B, o.methods);
		CHECK(xmpp_stanza_get_attribute(
			      proto_child(st, "si", NS_SI), "mime-type") == NULL);
		release(st);
	}
	a.name = NULL;
	CHECK(proto_build_offer(ctx, &a) == NULL);
}

/* ---- accepts ------------------------------------------------------- */

static int accept_fixture(const char *rel, const enum proto_method *offered,
			  int n, struct proto_accept *acc)
{
	xmpp_stanza_t *st = fixture(rel);
	int rc = st ? proto_parse_accept(st, offered, n, acc) : -999;

	release(st);
	return rc;
}

static void test_accept_fixtures(void)
{
	static const enum proto_method s5b_ibb[] = {PROTO_M_S5B, PROTO_M_IBB};
	static const enum proto_method ibb_s5b[] = {PROTO_M_IBB, PROTO_M_S5B};
	static const enum proto_method s5b[] = {PROTO_M_S5B};
	static const enum proto_method ibb[] = {PROTO_M_IBB};
	static const struct {
		const char *file;
		enum proto_method m;
	} cases[] = {
		{"libpurple/si-accept.xml", PROTO_M_S5B},
		{"libpurple/si-accept-ibb.xml", PROTO_M_IBB},
		{"qxmpp/si-accept.xml", PROTO_M_S5B},
		{"qxmpp/si-accept-ibb.xml", PROTO_M_IBB},
		{"slixmpp-peer/si-accept.xml", PROTO_M_S5B},
		{"slixmpp-peer/si-accept-ibb.xml", PROTO_M_IBB},
	};
	struct proto_accept acc;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CHECK_INT(0, accept_fixture(cases[i].file, s5b_ibb, 2, &acc));
		CHECK_INT(cases[i].m, acc.method);
		CHECK_INT(0, acc.has_range);
		CHECK_INT(0, acc.offset);
	}
	/* Spark lists two values: the first one WE offered wins. */
	CHECK_INT(0, accept_fixture("spark/si-accept.xml", s5b_ibb, 2, &acc));
	CHECK_INT(PROTO_M_S5B, acc.method);
	CHECK_INT(0, accept_fixture("spark/si-accept.xml", ibb_s5b, 2, &acc));
	CHECK_INT(PROTO_M_IBB, acc.method);
	CHECK_INT(0, accept_fixture("spark/si-accept.xml", ibb, 1, &acc));
	CHECK_INT(PROTO_M_IBB, acc.method);
	CHECK_INT(0, accept_fixture("spark/si-accept.xml", NULL, 0, &acc));
	CHECK_INT(PROTO_M_S5B, acc.method);
	/* A method we did not offer. */
	CHECK_INT(-ENOTSUP,
		  accept_fixture("libpurple/si-accept-ibb.xml", s5b, 1, &acc));
	CHECK_INT(PROTO_M_NONE, acc.method);
	/* An offer or an error is not an accept. */
	CHECK_INT(-EBADMSG,
		  accept_fixture("libpurple/si-reject.xml", s5b_ibb, 2, &acc));
	CHECK_INT(-EBADMSG,
		  accept_fixture("libpurple/si-offer.xml", s5b_ibb, 2, &acc));
}

static int accept_rc(const char *xml, struct proto_accept *acc)
{
	static const enum proto_method s5b_ibb[] = {PROTO_M_S5B, PROTO_M_IBB};
	xmpp_stanza_t *st = from_string(xml);
	int rc = st ? proto_parse_accept(st, s5b_ibb, 2, acc) : -999;

	release(st);
	return rc;
}

#define ACCEPT(file, values)                                                 \
	"<iq type='result' id='a'><si xmlns='" NS_SI "'>" file               \
	"<feature xmlns='" NS_FEATURE_NEG "'><x xmlns='" NS_DATA             \
	"' type='submit'><field var='stream-method'>" values                 \
	"</field></x></feature></si></iq>"

static void test_accept_hostile_and_roundtrip(void)
{
	struct proto_accept acc;
	xmpp_stanza_t *st;

	CHECK_INT(-EBADMSG, accept_rc(ACCEPT("", ""), &acc));
	CHECK_INT(-ENOTSUP, accept_rc(ACCEPT("", "<value>urn:x</value>"), &acc));
	CHECK_INT(-EBADMSG, accept_rc("<iq type='result' id='a'/>", &acc));
	CHECK_INT(0, accept_rc(ACCEPT("<file xmlns='" NS_SI_FT
				      "'><range offset='1000' length='5'/>"
				      "</file>",
				      "<value>" NS_IBB "</value>"),
			       &acc));
	CHECK_INT(PROTO_M_IBB, acc.method);
	CHECK_INT(1, acc.has_range);
	CHECK_INT(1000, acc.offset);
	CHECK_INT(5, acc.length);
	CHECK_INT(0, accept_rc(ACCEPT("<file xmlns='" NS_SI_FT "'><range/></file>",
				      "<value>" NS_IBB "</value>"),
			       &acc));
	CHECK_INT(1, acc.has_range);
	CHECK_INT(0, acc.offset);
	CHECK_INT(-EBADMSG,
		  accept_rc(ACCEPT("<file xmlns='" NS_SI_FT
				   "'><range offset='-1'/></file>",
				   "<value>" NS_IBB "</value>"),
			    &acc));
	CHECK_INT(-EBADMSG,
		  accept_rc(ACCEPT("<file xmlns='" NS_SI_FT
				   "'><range offset='99999999999999999999999'/>"
				   "</file>",
				   "<value>" NS_IBB "</value>"),
			    &acc));

	st = round_trip(proto_build_accept(ctx, "alice@localhost/x", "id7",
					   PROTO_M_S5B, 0));
	if (st) {
		CHECK_STR("result", xmpp_stanza_get_type(st));
		CHECK_STR("id7", xmpp_stanza_get_id(st));
		CHECK_STR("alice@localhost/x", xmpp_stanza_get_to(st));
		CHECK_INT(0, proto_parse_accept(st, NULL, 0, &acc));
		CHECK_INT(PROTO_M_S5B, acc.method);
		CHECK_INT(0, acc.has_range);
		/* no <file/> at all when offset is 0 */
		CHECK(proto_child(proto_child(st, "si", NS_SI), "file", NULL) ==
		      NULL);
		release(st);
	}
	st = round_trip(proto_build_accept(ctx, "alice@localhost/x", "id8",
					   PROTO_M_IBB, 1ULL << 40));
	if (st) {
		CHECK_INT(0, proto_parse_accept(st, NULL, 0, &acc));
		CHECK_INT(PROTO_M_IBB, acc.method);
		CHECK_INT(1, acc.has_range);
		CHECK(acc.offset == 1ULL << 40);
		release(st);
	}
	CHECK(proto_build_accept(ctx, "a@b", "i", PROTO_M_NONE, 0) == NULL);
}

/* ---- errors -------------------------------------------------------- */

static void check_error(const char *rel, const char *cond, const char *text)
{
	char c[64], t[256];
	xmpp_stanza_t *st = fixture(rel);

	if (!st)
		return;
	CHECK_INT(0, proto_parse_error(st, c, sizeof(c), t, sizeof(t)));
	CHECK_STR(cond, c);
	CHECK_STR(text, t);
	release(st);
}

static void test_errors(void)
{
	char c[16], t[8];
	xmpp_stanza_t *st;

	check_error("libpurple/si-reject.xml", "forbidden", "Offer Declined");
	check_error("libpurple/error-item-not-found.xml", "item-not-found", "");
	check_error("qxmpp/si-reject.xml", "forbidden", "");
	check_error("qxmpp/error-item-not-found.xml", "item-not-found", "");
	check_error("qxmpp/error-bad-request-no-common-method.xml",
		    "bad-request", "");
	check_error("slixmpp-peer/si-reject.xml", "forbidden", "Offer Declined");
	check_error("slixmpp-peer/error-item-not-found.xml", "item-not-found",
		    "could not connect to any streamhost");
	check_error("slixmpp-peer/error-item-not-found-no-usable-streamhost.xml",
		    "item-not-found", "could not connect to any streamhost");
	check_error("slixmpp-peer/error-no-valid-streams.xml", "bad-request",
		    "no acceptable stream method");
	check_error("prosody/proxy-activate-error-item-not-found.xml",
		    "item-not-found", "");
	check_error("prosody/error-service-unavailable-offline-target.xml",
		    "service-unavailable", "");

	st = fixture("libpurple/ibb-data-result.xml");
	if (st) {
		CHECK_INT(-EBADMSG, proto_parse_error(st, c, sizeof(c), t,
						      sizeof(t)));
		release(st);
	}
	/* Long text is cut on a UTF-8 boundary; a long condition is "". */
	st = from_string("<iq type='error' id='e'><error type='cancel'>"
			 "<an-overly-long-condition-name xmlns='" NS_STANZAS
			 "'/><text xmlns='" NS_STANZAS
			 "'>ab\xc3\xa9\xc3\xa9xyz</text></error></iq>");
	if (st) {
		CHECK_INT(0, proto_parse_error(st, c, sizeof(c), t, 5));
		CHECK_STR("", c);
		CHECK_STR("ab\xc3\xa9", t);
		CHECK_INT(0, proto_parse_error(st, c, sizeof(c), t, 4));
		CHECK_STR("ab", t);
		CHECK_INT(0, proto_parse_error(st, NULL, 0, NULL, 0));
		release(st);
	}
	st = from_string("<iq type='error' id='e'/>");
	if (st) {
		CHECK_INT(-EBADMSG,
			  proto_parse_error(st, c, sizeof(c), t, sizeof(t)));
		release(st);
	}

	st = round_trip(proto_build_error(ctx, "a@b/c", "x1", "cancel",
					  "bad-request", "no method",
					  NS_SI, "no-valid-streams"));
	if (st) {
		char tt[64];

		CHECK_STR("error", xmpp_stanza_get_type(st));
		CHECK_STR("x1", xmpp_stanza_get_id(st));
		CHECK_STR("a@b/c", xmpp_stanza_get_to(st));
		CHECK_INT(0, proto_parse_error(st, c, sizeof(c), tt, sizeof(tt)));
		CHECK_STR("bad-request", c);
		CHECK_STR("no method", tt);
		CHECK(proto_child(proto_child(st, "error", NULL),
				  "no-valid-streams", NS_SI) != NULL);
		CHECK_STR("cancel", xmpp_stanza_get_type(
					    proto_child(st, "error", NULL)));
		release(st);
	}
	st = round_trip(proto_build_error(ctx, "a@b/c", "x2", "cancel",
					  "forbidden", NULL, NULL, NULL));
	if (st) {
		CHECK_INT(0, proto_parse_error(st, c, sizeof(c), t, sizeof(t)));
		CHECK_STR("forbidden", c);
		CHECK_STR("", t);
		release(st);
	}
}

/* ---- XEP-0065 ------------------------------------------------------ */

static void test_streamhosts(void)
{
	struct proto_streamhosts sh;
	xmpp_stanza_t *st;

	st = fixture("libpurple/s5b-streamhosts.xml");
	if (st) {
		CHECK_INT(0, proto_parse_streamhosts(st, &sh));
		CHECK_STR("purple3c0350b8", sh.id);
		CHECK_STR("purple3c0350b7", sh.sid);
		CHECK_INT(2, sh.nhosts);
		CHECK_STR("alice@localhost/purple", sh.hosts[0].jid);
		CHECK_STR("127.0.0.1", sh.hosts[0].host);
		CHECK_INT(34435, sh.hosts[0].port);
		CHECK_STR("proxy.localhost", sh.hosts[1].jid);
		CHECK_INT(57777, sh.hosts[1].port);
		release(st);
	}
	st = fixture("qxmpp/s5b-streamhosts.xml");
	if (st) {
		CHECK_INT(0, proto_parse_streamhosts(st, &sh));
		CHECK_STR("95a12734-d2de-4908-80bb-90f8c8672527", sh.sid);
		CHECK_INT(2, sh.nhosts);
		CHECK_STR("alice@localhost/qxmpp", sh.hosts[0].jid);
		CHECK_INT(34343, sh.hosts[0].port);
		CHECK_STR("proxy.localhost", sh.hosts[1].jid);
		release(st);
	}
	st = fixture("slixmpp-peer/s5b-streamhosts.xml");
	if (st) {
		CHECK_INT(0, proto_parse_streamhosts(st, &sh));
		CHECK_STR("s3d4dd2619e3643419c2a1b9ca71ddec9", sh.sid);
		CHECK_INT(2, sh.nhosts);
		CHECK_STR("alice@localhost/sender", sh.hosts[0].jid);
		CHECK_INT(42057, sh.hosts[0].port);
		release(st);
	}
	st = fixture("spark/s5b-streamhosts.xml");
	if (st) {
		CHECK_INT(0, proto_parse_streamhosts(st, &sh));
		CHECK_STR("iq_19", sh.id);
		CHECK_STR("iphone@192.168.1.113/xiff", sh.from);
		CHECK_STR("82B0C697-C1DE-93F9-103E-481C8E7A3BD8", sh.sid);
		CHECK_INT(1, sh.nhosts);
		CHECK_STR("proxy.192.168.1.113", sh.hosts[0].jid);
		CHECK_STR("192.168.1.113", sh.hosts[0].host);
		CHECK_INT(7777, sh.hosts[0].port);
		release(st);
	}
}

#define SH_HEAD(mode)                                                        \
	"<iq type='set' id='q'><query xmlns='" NS_BYTESTREAMS "' sid='s' " mode ">"

static int streamhosts_rc(const char *xml, struct proto_streamhosts *sh)
{
	xmpp_stanza_t *st = from_string(xml);
	int rc = st ? proto_parse_streamhosts(st, sh) : -999;

	release(st);
	return rc;
}

static void test_streamhosts_hostile(void)
{
	struct proto_streamhosts sh;
	struct proto_streamhost hosts[3] = {
		{"alice@localhost/x", "192.0.2.1", 1},
		{"alice@localhost/x", "2001:db8::1", 65535},
		{"proxy.localhost", "proxy.example", 7777},
	};
	char xml[8192];
	size_t o;
	xmpp_stanza_t *st;

	CHECK_INT(-ENOTSUP,
		  streamhosts_rc(SH_HEAD("mode='udp'") "</query></iq>", &sh));
	CHECK_INT(-EBADMSG,
		  streamhosts_rc("<iq type='set' id='q'><query xmlns='"
				 NS_BYTESTREAMS "'/></iq>", &sh));
	CHECK_INT(-EBADMSG, streamhosts_rc("<iq type='set' id='q'/>", &sh));
	/* Bad hosts are skipped, good ones kept in order. */
	CHECK_INT(0,
		  streamhosts_rc(SH_HEAD("") "<streamhost jid='a' host='h' port='0'/>"
				 "<streamhost jid='a' host='h' port='65536'/>"
				 "<streamhost jid='a' host='h' port='abc'/>"
				 "<streamhost jid='a' host='h' port='-1'/>"
				 "<streamhost jid='a' host='h' port=''/>"
				 "<streamhost jid='a' host='h'/>"
				 "<streamhost jid='a' port='1'/>"
				 "<streamhost jid='a' host='' port='1'/>"
				 "<streamhost jid='a' host='h h' port='1'/>"
				 "<streamhost host='h' port='1'/>"
				 "<streamhost jid='ok' host='10.0.0.1' port='099'/>"
				 "</query></iq>",
				 &sh));
	CHECK_INT(1, sh.nhosts);
	CHECK_STR("ok", sh.hosts[0].jid);
	CHECK_INT(99, sh.hosts[0].port);
	/* More than PROTO_MAX_HOSTS: the rest are ignored. */
	o = (size_t)snprintf(xml, sizeof(xml), "%s", SH_HEAD(""));
	for (int i = 0; i < 20; i++)
		o += (size_t)snprintf(xml + o, sizeof(xml) - o,
				      "<streamhost jid='j%d' host='h%d' "
				      "port='%d'/>",
				      i, i, 1000 + i);
	snprintf(xml + o, sizeof(xml) - o, "</query></iq>");
	CHECK_INT(0, streamhosts_rc(xml, &sh));
	CHECK_INT(PROTO_MAX_HOSTS, sh.nhosts);
	CHECK_STR("j7", sh.hosts[7].jid);
	CHECK_INT(1007, sh.hosts[7].port);

	st = round_trip(proto_build_streamhosts(ctx, "sh1", "bob@localhost/p",
						"sid9", hosts, 3));
	if (st) {
		CHECK_INT(0, proto_parse_streamhosts(st, &sh));
		CHECK_STR("sh1", sh.id);
		CHECK_STR("sid9", sh.sid);
		CHECK_STR("bob@localhost/p", xmpp_stanza_get_to(st));
		CHECK_INT(3, sh.nhosts);
		for (int i = 0; i < 3; i++) {
			CHECK_STR(hosts[i].jid, sh.hosts[i].jid);
			CHECK_STR(hosts[i].host, sh.hosts[i].host);
			CHECK_INT(hosts[i].port, sh.hosts[i].port);
		}
		release(st);
	}
}

static void check_used(const char *rel, const char *jid)
{
	char buf[PROTO_JID_MAX];
	xmpp_stanza_t *st = fixture(rel);

	if (!st)
		return;
	CHECK_INT(0, proto_parse_streamhost_used(st, buf, sizeof(buf)));
	CHECK_STR(jid, buf);
	release(st);
}

static void test_streamhost_used(void)
{
	char buf[16];
	xmpp_stanza_t *st;

	check_used("libpurple/s5b-streamhost-used.xml", "alice@localhost/sender");
	check_used("libpurple/s5b-streamhost-used-proxy.xml", "proxy.localhost");
	check_used("qxmpp/s5b-streamhost-used.xml", "alice@localhost/sender");
	check_used("qxmpp/s5b-streamhost-used-proxy.xml", "proxy.localhost");
	check_used("slixmpp-peer/s5b-streamhost-used.xml",
		   "alice@localhost/purple");
	check_used("slixmpp-peer/s5b-streamhost-used-proxy.xml",
		   "proxy.localhost");
	check_used("spark/s5b-streamhost-used.xml", "proxy.192.168.1.113");

	st = fixture("libpurple/s5b-streamhost-used.xml");
	if (st) {
		CHECK_INT(-E2BIG, proto_parse_streamhost_used(st, buf, 8));
		release(st);
	}
	st = fixture("qxmpp/error-item-not-found.xml");
	if (st) {
		CHECK_INT(-EBADMSG,
			  proto_parse_streamhost_used(st, buf, sizeof(buf)));
		release(st);
	}
	st = from_string("<iq type='result' id='u'><query xmlns='" NS_BYTESTREAMS
			 "'><streamhost-used/></query></iq>");
	if (st) {
		CHECK_INT(-EBADMSG,
			  proto_parse_streamhost_used(st, buf, sizeof(buf)));
		release(st);
	}
	st = round_trip(proto_build_streamhost_used(ctx, "alice@localhost/s",
						    "u1", "sid1",
						    "proxy.localhost"));
	if (st) {
		char jid[64];

		CHECK_STR("result", xmpp_stanza_get_type(st));
		CHECK_STR("u1", xmpp_stanza_get_id(st));
		CHECK_INT(0, proto_parse_streamhost_used(st, jid, sizeof(jid)));
		CHECK_STR("proxy.localhost", jid);
		CHECK_STR("sid1", xmpp_stanza_get_attribute(
					  proto_child(st, "query",
						      NS_BYTESTREAMS),
					  "sid"));
		release(st);
	}
}

static void test_proxy_and_activate(void)
{
	static const char *files[] = {
		"prosody/proxy-streamhost-query-result.xml",
		"prosody/proxy-streamhost-query-result-to-qxmpp.xml",
	};
	static const struct {
		const char *file, *sid, *target;
	} acts[] = {
		{"libpurple/s5b-activate.xml", "purple3c0350b7",
		 "bob@localhost/peer"},
		{"qxmpp/s5b-activate.xml", "95a12734-d2de-4908-80bb-90f8c8672527",
		 "bob@localhost/peer"},
		{"slixmpp-peer/s5b-activate.xml",
		 "sf88ee359c18b42c6b8c23ca5c0ca3746", "bob@localhost/qxmpp"},
		{"spark/s5b-activate.xml", "82B0C697-C1DE-93F9-103E-481C8E7A3BD8",
		 "android@192.168.1.113/Spark 2.6.3"},
	};
	struct proto_streamhost h;
	xmpp_stanza_t *st;

	for (size_t i = 0; i < 2; i++) {
		st = fixture(files[i]);
		if (!st)
			continue;
		CHECK_INT(0, proto_parse_proxy_address(st, &h));
		CHECK_STR("proxy.localhost", h.jid);
		CHECK_STR("127.0.0.1", h.host);
		CHECK_INT(57777, h.port);
		release(st);
	}
	st = fixture("spark/proxy-query-result.xml");
	if (st) {
		CHECK_INT(0, proto_parse_proxy_address(st, &h));
		CHECK_STR("proxy.192.168.1.113", h.jid);
		CHECK_STR("192.168.1.113", h.host);
		CHECK_INT(7777, h.port);
		release(st);
	}
	/* A query (get) and an empty result are not proxy addresses. */
	st = fixture("libpurple/s5b-proxy-query.xml");
	if (st) {
		CHECK_INT(-EBADMSG, proto_parse_proxy_address(st, &h));
		release(st);
	}
	st = fixture("prosody/proxy-activate-result.xml");
	if (st) {
		CHECK_INT(-EBADMSG, proto_parse_proxy_address(st, &h));
		release(st);
	}
	/* Our activate carries what the captured ones carry. */
	for (size_t i = 0; i < sizeof(acts) / sizeof(acts[0]); i++) {
		xmpp_stanza_t *ours, *q, *qo;
		char t1[256], t2[256];

		st = fixture(acts[i].file);
		if (!st)
			continue;
		q = proto_child(st, "query", NS_BYTESTREAMS);
		CHECK_STR(acts[i].sid, xmpp_stanza_get_attribute(q, "sid"));
		CHECK_INT(0, proto_text_copy(proto_child(q, "activate", NULL),
					     t1, sizeof(t1)));
		CHECK_STR(acts[i].target, t1);
		ours = round_trip(proto_build_activate(
			ctx, "act1", xmpp_stanza_get_to(st), acts[i].sid,
			acts[i].target));
		if (ours) {
			CHECK_STR("set", xmpp_stanza_get_type(ours));
			CHECK_STR(xmpp_stanza_get_to(st),
				  xmpp_stanza_get_to(ours));
			qo = proto_child(ours, "query", NS_BYTESTREAMS);
			CHECK_STR(acts[i].sid,
				  xmpp_stanza_get_attribute(qo, "sid"));
			CHECK_INT(0, proto_text_copy(proto_child(qo, "activate",
								 NULL),
						     t2, sizeof(t2)));
			CHECK_STR(t1, t2);
			release(ours);
		}
		release(st);
	}
}

/* ---- XEP-0047 ------------------------------------------------------ */

static void test_ibb_fixtures(void)
{
	static const char *opens[] = {"libpurple/ibb-open.xml",
				      "qxmpp/ibb-open.xml",
				      "slixmpp-peer/ibb-open.xml"};
	static const struct {
		const char *file, *sid;
		size_t len;
	} datas[] = {
		{"libpurple/ibb-data.xml", "purpleaa506a79", 3070},
		{"qxmpp/ibb-data.xml", "1c43885a-b6ff-4a56-b706-c7004128e427",
		 4096},
		{"slixmpp-peer/ibb-data.xml", "s437aa52cd9744e078dd3af3b84b41f2b",
		 4096},
	};
	static const struct {
		const char *file, *sid;
	} closes[] = {
		{"libpurple/ibb-close.xml", "purpleaa506a79"},
		{"qxmpp/ibb-close.xml", "1c43885a-b6ff-4a56-b706-c7004128e427"},
		{"slixmpp-peer/ibb-close.xml", "s437aa52cd9744e078dd3af3b84b41f2b"},
	};
	static uint8_t first[4096], buf[65536];
	struct proto_ibb_open op;
	struct proto_ibb_data d;
	size_t len;
	char sid[PROTO_SID_MAX];
	xmpp_stanza_t *st;

	for (size_t i = 0; i < 3; i++) {
		st = fixture(opens[i]);
		if (!st)
			continue;
		CHECK_INT(0, proto_parse_ibb_open(st, &op));
		CHECK_INT(4096, op.block_size);
		CHECK_INT(0, op.message);
		CHECK(op.sid[0] != '\0');
		CHECK(op.id[0] != '\0');
		release(st);
	}
	for (size_t i = 0; i < 3; i++) {
		st = fixture(datas[i].file);
		if (!st)
			continue;
		CHECK_INT(0, proto_parse_ibb_data(st, &d, buf, sizeof(buf),
						  &len));
		CHECK_INT(datas[i].len, len);
		CHECK_INT(0, d.seq);
		CHECK_STR(datas[i].sid, d.sid);
		CHECK_INT(0xab, buf[0]);
		CHECK_INT(0xfc, buf[1]);
		/* All three carry the same file: libpurple's 3070 bytes
		 * are a prefix of the others' 4096. */
		if (i == 0)
			memcpy(first, buf, 3070);
		else
			CHECK(memcmp(first, buf, 3070) == 0);
		/* One byte too small: -E2BIG, never an overflow. */
		CHECK_INT(-E2BIG, proto_parse_ibb_data(st, &d, buf,
						       datas[i].len - 1, &len));
		CHECK_INT(0, len);
		release(st);
	}
	st = fixture("slixmpp-peer/ibb-data.xml");
	if (st) {
		CHECK_INT(0, proto_parse_ibb_data(st, &d, buf, 4096, &len));
		CHECK_STR("alice@localhost/sender", d.from);
		CHECK_STR("a163cdd45edb4504ac28df871051d3e2", d.id);
		CHECK_INT(0xfc, buf[4092]);
		CHECK_INT(0x86, buf[4093]);
		CHECK_INT(0x07, buf[4094]);
		CHECK_INT(0x77, buf[4095]);
		release(st);
	}
	for (size_t i = 0; i < 3; i++) {
		st = fixture(closes[i].file);
		if (!st)
			continue;
		CHECK_INT(0, proto_parse_ibb_close(st, sid, sizeof(sid)));
		CHECK_STR(closes[i].sid, sid);
		CHECK_INT(-E2BIG, proto_parse_ibb_close(st, sid, 4));
		release(st);
	}
	/* Results are not requests. */
	st = fixture("qxmpp/ibb-close-result.xml");
	if (st) {
		CHECK_INT(-EBADMSG, proto_parse_ibb_close(st, sid, sizeof(sid)));
		CHECK_INT(-EBADMSG, proto_parse_ibb_open(st, &op));
		CHECK_INT(-EBADMSG, proto_parse_ibb_data(st, &d, buf, 10, &len));
		release(st);
	}
}

static int ibb_data_rc(const char *xml, uint8_t *buf, size_t cap,
		       size_t *len, struct proto_ibb_data *d)
{
	xmpp_stanza_t *st = from_string(xml);
	int rc = st ? proto_parse_ibb_data(st, d, buf, cap, len) : -999;

	release(st);
	return rc;
}

static int ibb_open_rc(const char *attrs, struct proto_ibb_open *op)
{
	char xml[512];
	xmpp_stanza_t *st;
	int rc;

	snprintf(xml, sizeof(xml),
		 "<iq type='set' id='o'><open xmlns='" NS_IBB "' %s/></iq>",
		 attrs);
	st = from_string(xml);
	rc = st ? proto_parse_ibb_open(st, op) : -999;
	release(st);
	return rc;
}

#define DATA(attrs, text)                                                    \
	"<iq type='set' id='d'><data xmlns='" NS_IBB "' " attrs ">" text     \
	"</data></iq>"

static void test_ibb_hostile(void)
{
	struct proto_ibb_open op;
	struct proto_ibb_data d;
	uint8_t buf[64];
	size_t len;

	CHECK_INT(0, ibb_open_rc("sid='s' block-size='65535'", &op));
	CHECK_INT(65535, op.block_size);
	CHECK_INT(0, ibb_open_rc("sid='s' block-size='1' stanza='iq'", &op));
	CHECK_INT(0, ibb_open_rc("sid='s' block-size='4096' stanza='message'",
				 &op));
	CHECK_INT(1, op.message);
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='s' block-size='4096' stanza='x'",
					&op));
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='s' block-size='0'", &op));
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='s' block-size='65536'", &op));
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='s' block-size='70000'", &op));
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='s' block-size='-4096'", &op));
	CHECK_INT(-EBADMSG,
		  ibb_open_rc("sid='s' block-size='99999999999999999999999'",
			      &op));
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='s'", &op));
	CHECK_INT(-EBADMSG, ibb_open_rc("block-size='4096'", &op));
	CHECK_INT(-EBADMSG, ibb_open_rc("sid='' block-size='4096'", &op));

	CHECK_INT(0, ibb_data_rc(DATA("sid='s' seq='65535'", "Zm9vYmFy"), buf,
				 sizeof(buf), &len, &d));
	CHECK_INT(65535, d.seq);
	CHECK_INT(6, len);
	CHECK(memcmp(buf, "foobar", 6) == 0);
	/* whitespace inside the base64 is fine (line-wrapped senders) */
	CHECK_INT(0, ibb_data_rc(DATA("sid='s' seq='1'", "Zm9v\nYmE=\r\n"), buf,
				 sizeof(buf), &len, &d));
	CHECK_INT(5, len);
	/* empty data element: 0 bytes */
	CHECK_INT(0, ibb_data_rc(DATA("sid='s' seq='2'", ""), buf, sizeof(buf),
				 &len, &d));
	CHECK_INT(0, len);
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='65536'", "Zm9v"),
					buf, sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='70000'", "Zm9v"),
					buf, sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='-1'", "Zm9v"), buf,
					sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq=''", "Zm9v"), buf,
					sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s'", "Zm9v"), buf,
					sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("seq='0'", "Zm9v"), buf,
					sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='0'", "Zm9v!!!!"),
					buf, sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='0'", "Zm9"), buf,
					sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='0'", "Zg==Zg=="),
					buf, sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='0'", "Zm9v<x/>"),
					buf, sizeof(buf), &len, &d));
	CHECK_INT(-EBADMSG, ibb_data_rc(DATA("sid='s' seq='0'", "Zm9v&amp;"),
					buf, sizeof(buf), &len, &d));
	/* the header is filled even when the payload is bad, so the
	 * engine can answer and close the right stream */
	CHECK_STR("s", d.sid);
	CHECK_STR("d", d.id);
	CHECK_INT(-E2BIG, ibb_data_rc(DATA("sid='s' seq='0'", "Zm9vYmFy"), buf,
				      5, &len, &d));
	CHECK_INT(0, ibb_data_rc(DATA("sid='s' seq='0'", "Zm9vYmFy"), buf, 6,
				 &len, &d));
}

static void test_ibb_roundtrip(void)
{
	static uint8_t payload[65535], back[65535];
	struct proto_ibb_open op;
	struct proto_ibb_data d;
	char sid[64];
	size_t len;
	xmpp_stanza_t *st;

	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (uint8_t)(i * 7 + (i >> 8));
	st = round_trip(proto_build_ibb_open(ctx, "io", "bob@l/p", "sidX",
					     4096));
	if (st) {
		CHECK_INT(0, proto_parse_ibb_open(st, &op));
		CHECK_STR("io", op.id);
		CHECK_STR("sidX", op.sid);
		CHECK_INT(4096, op.block_size);
		CHECK_INT(0, op.message);
		CHECK_STR("bob@l/p", xmpp_stanza_get_to(st));
		release(st);
	}
	CHECK(proto_build_ibb_open(ctx, "io", "b", "s", 0) == NULL);
	CHECK(proto_build_ibb_open(ctx, "io", "b", "s", 65536) == NULL);
	{
		static const size_t sizes[] = {0, 1, 2, 3, 4096, 65535};

		for (size_t k = 0; k < 6; k++) {
			st = round_trip(proto_build_ibb_data(
				ctx, "id", "bob@l/p", "sidX",
				(uint16_t)(65535 - k), payload, sizes[k]));
			if (!st)
				continue;
			CHECK_INT(0, proto_parse_ibb_data(st, &d, back,
							  sizeof(back), &len));
			CHECK_INT(sizes[k], len);
			CHECK_INT(65535 - k, d.seq);
			CHECK(memcmp(back, payload, sizes[k]) == 0);
			release(st);
		}
	}
	st = round_trip(proto_build_ibb_close(ctx, "ic", "bob@l/p", "sidX"));
	if (st) {
		CHECK_INT(0, proto_parse_ibb_close(st, sid, sizeof(sid)));
		CHECK_STR("sidX", sid);
		release(st);
	}
}

/* ---- the rest: helpers, non-stanzas -------------------------------- */

static void test_misc(void)
{
	uint64_t v;
	struct proto_offer o;
	xmpp_stanza_t *st;

	CHECK_INT(0, proto_parse_u64("0", &v));
	CHECK_INT(0, proto_parse_u64("18446744073709551615", &v));
	CHECK(v == UINT64_MAX);
	CHECK_INT(-EBADMSG, proto_parse_u64("18446744073709551616", &v));
	CHECK_INT(-EBADMSG, proto_parse_u64("", &v));
	CHECK_INT(-EBADMSG, proto_parse_u64(NULL, &v));
	/* Every parser refuses every other fixture kind cleanly. */
	st = fixture("libpurple/disco-info-result.xml");
	if (st) {
		struct proto_streamhosts sh;
		struct proto_ibb_open op;

		CHECK_INT(-EBADMSG, proto_parse_offer(st, &o));
		CHECK_INT(-EBADMSG, proto_parse_streamhosts(st, &sh));
		CHECK_INT(-EBADMSG, proto_parse_ibb_open(st, &op));
		release(st);
	}
	CHECK_INT(-EBADMSG, proto_parse_offer(NULL, &o));
}

static int find_fixtures(void)
{
	struct stat sb;
	const char *env = getenv("XFS_FIXTURES");

#ifdef XFS_FIXTURES
	snprintf(fixdir, sizeof(fixdir), "%s", XFS_FIXTURES);
	if (stat(fixdir, &sb) == 0 && S_ISDIR(sb.st_mode))
		return 1;
#endif
	if (env) {
		snprintf(fixdir, sizeof(fixdir), "%s", env);
		if (stat(fixdir, &sb) == 0 && S_ISDIR(sb.st_mode))
			return 1;
	}
	return 0;
}

int main(void)
{
	int have = find_fixtures();

	xmpp_initialize();
	ctx = xmpp_ctx_new(NULL, NULL);
	if (!ctx) {
		fprintf(stderr, "xmpp_ctx_new failed\n");
		return 1;
	}
	if (have) {
		test_offer_fixtures();
		test_accept_fixtures();
		test_errors();
		test_streamhosts();
		test_streamhost_used();
		test_proxy_and_activate();
		test_ibb_fixtures();
		test_misc();
	} else {
		fprintf(stderr, "fixtures not found (XFS_FIXTURES): skipping "
				"the fixture tests\n");
	}
	test_offer_hostile();
	test_offer_roundtrip();
	test_accept_hostile_and_roundtrip();
	test_streamhosts_hostile();
	test_ibb_hostile();
	test_ibb_roundtrip();
	xmpp_ctx_free(ctx);
	xmpp_shutdown();
	if (failures) {
		fprintf(stderr, "test_proto: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_proto: %d checks ok%s\n", checks,
	       have ? "" : " (fixtures skipped)");
	return have ? 0 : 77;
}
