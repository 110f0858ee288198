suppressMessages(library(survey))
df <- read.csv("survey_small.csv", stringsAsFactors=FALSE, na.strings=c("NA", ""))
options(survey.lonely.psu="fail")
out <- file("expected.tsv", "w")
put <- function(key, v) {
  v <- as.numeric(v)
  for (i in seq_along(v)) {
    k <- if (length(v) > 1) paste0(key, "#", i) else key
    cat(k, "\t", if (is.na(v[i])) "NA" else sprintf("%.17g", v[i]), "\n", sep="", file=out)
  }
}
stat <- function(key, s) { put(paste0(key, "/est"), coef(s)); put(paste0(key, "/se"), SE(s)) }
withdeff <- function(key, fun, ...) {
  a <- fun(..., deff=TRUE); b <- fun(..., deff="replace")
  stat(key, a); put(paste0(key, "/deff"), deff(a)); put(paste0(key, "/deff_replace"), deff(b))
}
ratio <- function(key, r) { put(paste0(key, "/est"), coef(r)); put(paste0(key, "/se"), SE(r)) }
byres <- function(key, b) { put(paste0(key, "/est"), coef(b)); put(paste0(key, "/se"), as.matrix(SE(b))) }
ciprop <- function(key, d) {
  for (m in c("logit", "beta")) {
    p <- svyciprop(~bin, d, method=m)
    put(paste0(key, "/", m, "/est"), coef(p)); put(paste0(key, "/", m, "/ci"), confint(p))
  }
  for (m in c("logit", "beta")) {
    b <- svyby(~bin, ~dom, d, svyciprop, vartype="ci", method=m)
    put(paste0(key, "/by_", m, "/lower"), b$ci_l); put(paste0(key, "/by_", m, "/upper"), b$ci_u)
  }
}
common <- function(key, d, replicate=FALSE) {
  put(paste0(key, "/degf"), degf(d))
  withdeff(paste0(key, "/mean_y"), svymean, ~y, d, na.rm=TRUE)
  withdeff(paste0(key, "/total_y"), svytotal, ~y, d, na.rm=TRUE)
  r <- svyratio(~y, ~x, d, na.rm=TRUE)
  ratio(paste0(key, "/ratio_y_x"), r)
  if (!replicate) {
    r2 <- svyratio(~y, ~x, d, na.rm=TRUE, deff=TRUE); put(paste0(key, "/ratio_y_x/deff"), attr(r2, "deff"))
    r3 <- svyratio(~y, ~x, d, na.rm=TRUE, deff="replace"); put(paste0(key, "/ratio_y_x/deff_replace"), attr(r3, "deff"))
  }
  stat(paste0(key, "/prop_cat"), svymean(~factor(cat), d, na.rm=TRUE))
  stat(paste0(key, "/total_cat"), svytotal(~factor(cat), d, na.rm=TRUE))
  a <- svyby(~y, ~dom, d, svymean, na.rm=TRUE, deff=TRUE)
  byres(paste0(key, "/by_mean_y"), a); put(paste0(key, "/by_mean_y/deff"), deff(a))
  byres(paste0(key, "/by_total_y"), svyby(~y, ~dom, d, svytotal, na.rm=TRUE))
  byres(paste0(key, "/by_ratio_y_x"), svyby(~y, ~dom, denominator=~x, design=d, FUN=svyratio, na.rm=TRUE))
  byres(paste0(key, "/by_prop_cat"), svyby(~factor(cat), ~dom, d, svymean, na.rm=TRUE))
  put(paste0(key, "/by_degf"), sapply(c("north", "south", "west"), function(v) degf(subset(d, dom == v))))
  ciprop(key, d)
}

# Linearisation designs.
common("two_stage_fpc", svydesign(id=~psu+ssu, strata=~h2, fpc=~fpc1m+fpc2c, weights=~w, data=df))
common("two_stage_nofpc", svydesign(id=~psu+ssu, strata=~h2, weights=~w, data=df))
common("two_stage_fpc_noweights", svydesign(id=~psu+ssu, strata=~h2, fpc=~fpc1m+fpc2c, data=df))
common("cluster_fraction", svydesign(id=~psu, fpc=~I(13/N1), weights=~w, data=df))
common("certainty_psu", svydesign(id=~psu, strata=~h, fpc=~fpc1c, weights=~w, data=df))
for (mode in c("adjust", "average", "remove", "certainty")) {
  options(survey.lonely.psu=mode)
  d <- svydesign(id=~psu, strata=~h, weights=~w, data=df)
  put(paste0("lonely_", mode, "/degf"), degf(d))
  stat(paste0("lonely_", mode, "/mean_y"), svymean(~y, d, na.rm=TRUE))
  stat(paste0("lonely_", mode, "/total_y"), svytotal(~y, d, na.rm=TRUE))
  byres(paste0("lonely_", mode, "/by_mean_y"), svyby(~y, ~dom, d, svymean, na.rm=TRUE))
  d2 <- svydesign(id=~psu+ssu, strata=~h, fpc=~fpc1+fpc2, weights=~w, data=df)
  stat(paste0("lonely2_", mode, "/mean_y"), svymean(~y, d2, na.rm=TRUE))
  r <- as.svrepdesign(d, type="JKn")
  put(paste0("jkn_lonely_", mode, "/degf"), degf(r))
  stat(paste0("jkn_lonely_", mode, "/mean_y"), svymean(~y, r, na.rm=TRUE))
  stat(paste0("jkn_lonely_", mode, "/total_y"), svytotal(~y, r, na.rm=TRUE))
}
options(survey.lonely.psu="fail")

# Jackknife weights built from designs.
common("as_jk1", as.svrepdesign(svydesign(id=~psu, weights=~w, data=df), type="JK1"), TRUE)
common("as_jk1_fpc", as.svrepdesign(svydesign(id=~psu, weights=~w, fpc=~N1, data=df), type="JK1"), TRUE)
common("as_jkn", as.svrepdesign(svydesign(id=~psu, strata=~h2, weights=~w, data=df), type="JKn"), TRUE)
common("as_jkn_fpc_certainty", as.svrepdesign(svydesign(id=~psu, strata=~h, fpc=~fpc1c, weights=~w, data=df), type="JKn"), TRUE)
common("as_jkn_mse", as.svrepdesign(svydesign(id=~psu, strata=~h2, weights=~w, data=df), type="JKn", mse=TRUE), TRUE)

# Replicate weights given as columns.
rs <- as.numeric(readLines("jkn_rscales.txt"))
common("cols_brr", svrepdesign(data=df, repweights="^brr", weights=~w, type="BRR"), TRUE)
common("cols_fay", svrepdesign(data=df, repweights="^fay", weights=~w, type="Fay", rho=0.3), TRUE)
common("cols_boot", svrepdesign(data=df, repweights="^boot", weights=~w, type="bootstrap"), TRUE)
common("cols_boot_mse", svrepdesign(data=df, repweights="^boot", weights=~w, type="bootstrap", mse=TRUE), TRUE)
common("cols_jk1", svrepdesign(data=df, repweights="^jkone", weights=~w, type="JK1"), TRUE)
common("cols_jk1_scale", svrepdesign(data=df, repweights="^jkone", weights=~w, type="JK1", scale=0.8), TRUE)
common("cols_jkn", svrepdesign(data=df, repweights="^jkn", weights=~w, type="JKn", rscales=rs), TRUE)
common("cols_other", svrepdesign(data=df, repweights="^boot", weights=~w, type="other", scale=0.05, rscales=0.9), TRUE)
close(out)
