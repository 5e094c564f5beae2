set terminal svg size 900,640 dynamic noenhanced font 'Helvetica,12'
set grid
set key below maxrows 4
set ylabel 'validation loss (nats/char)'
set output 'loss_vs_bytes.svg'
set logscale x
set format x '1e%L'
set xlabel 'bytes sent per worker'
plot 'curves.dat' index 0 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'ddp', 'curves.dat' index 1 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'diloco', 'curves.dat' index 2 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'fedavg', 'curves.dat' index 3 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'int8', 'curves.dat' index 4 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'fp4', 'curves.dat' index 5 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'sparseloco', 'curves.dat' index 6 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'gossip_ring', 'curves.dat' index 7 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'gossip_exp', 'curves.dat' index 8 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'noloco', 'curves.dat' index 9 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'H10', 'curves.dat' index 10 using 3:($3 > 1 ? $2 : 1/0) with linespoints title 'H200', 1.243994 with lines dashtype 2 lc 'black' title 'true model on the validation set'
set output 'loss_vs_step.svg'
unset logscale x
set format x '%g'
set xlabel 'inner steps per worker'
plot 'curves.dat' index 0 using 1:2 with linespoints title 'ddp', 'curves.dat' index 1 using 1:2 with linespoints title 'diloco', 'curves.dat' index 2 using 1:2 with linespoints title 'fedavg', 'curves.dat' index 3 using 1:2 with linespoints title 'int8', 'curves.dat' index 4 using 1:2 with linespoints title 'fp4', 'curves.dat' index 5 using 1:2 with linespoints title 'sparseloco', 'curves.dat' index 6 using 1:2 with linespoints title 'gossip_ring', 'curves.dat' index 7 using 1:2 with linespoints title 'gossip_exp', 'curves.dat' index 8 using 1:2 with linespoints title 'noloco', 'curves.dat' index 9 using 1:2 with linespoints title 'H10', 'curves.dat' index 10 using 1:2 with linespoints title 'H200', 1.243994 with lines dashtype 2 lc 'black' title 'true model on the validation set'
