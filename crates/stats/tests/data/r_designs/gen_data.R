suppressMessages(library(survey))
set.seed(20240611)
# Strata with PSUs: A 3, B 4, C 2, D 1 (lonely), E 3 (all PSUs of E sampled: certainty via fpc)
strata_psus <- list(A=3, B=4, C=2, D=1, E=3)
Npsu <- c(A=10, B=8, C=5, D=4, E=3)
rows <- list(); psu_id <- 0
for (h in names(strata_psus)) {
  for (j in seq_len(strata_psus[[h]])) {
    psu_id <- psu_id + 1
    m <- sample(1:3, 1)              # SSUs sampled in this PSU
    M <- m + sample(0:4, 1)          # SSUs in the population of this PSU
    for (k in seq_len(m)) {
      nr <- sample(1:3, 1)
      for (r in seq_len(nr)) {
        rows[[length(rows)+1]] <- data.frame(h=h, psu=psu_id, ssu=k, fpc1=Npsu[[h]], fpc2=M,
                                             m=m, n_h=strata_psus[[h]])
      }
    }
  }
}
df <- do.call(rbind, rows)
n <- nrow(df)
df$h2 <- ifelse(df$h == "D", "C", df$h)          # D merged into C: no lonely stratum
df$fpc1c <- ifelse(df$h == "D", 1, df$fpc1)      # D as a certainty PSU (N = n = 1)
df$fpc1m <- ifelse(df$h == "D", 9, df$fpc1)      # merged stratum C+D population for h2
df$fpc1m[df$h2 == "C"] <- 9
df$w <- round((df$fpc1/df$n_h) * (df$fpc2/df$m) * (1 + runif(n)/5), 4)
df$y <- round(rnorm(n, 50, 12) + ifelse(df$h == "B", 10, 0), 2)
df$y[c(4, 17)] <- NA
df$x <- round(runif(n, 5, 20), 3)
df$x[c(9)] <- NA
df$cat <- sample(c("a", "b", "c"), n, replace=TRUE, prob=c(.5,.3,.2))
df$cat[c(6)] <- NA
df$dom <- sample(c("north", "south", "west"), n, replace=TRUE)
df$bin <- rbinom(n, 1, 0.3)
df$pair <- NA
# BRR needs 2 PSUs per stratum: pair PSUs 1-2, 3-4, ... (13 PSUs: the last pair has 3, merged by brrweights)
df$pair <- pmin(ceiling(df$psu / 2), 6)
df$N1 <- 40
df$fpc2c <- ifelse(df$m == 1, 1, df$fpc2)   # a PSU with one sampled SSU takes all its SSUs
write.csv(df[, c("h","h2","psu","ssu","fpc1","fpc1c","fpc1m","fpc2","w","y","x","cat","dom","bin","pair","N1","fpc2c")], "base.csv", row.names=FALSE, na="")
cat(n, "rows\n")
